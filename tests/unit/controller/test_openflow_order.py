"""The send plan of a TableMod, walked with a stand-in encoder: order, barriers, errors."""

import msgspec
import pytest

from routeflow.controller.openflow import fast_encode, reference
from routeflow.controller.openflow.order import SEND_ORDER, Kind, in_send_order
from routeflow.model import Flow, Group, match, output
from routeflow.protocol.messages import TableMod

FLOW = Flow(1, 10, match(eth_type=0x800, ipv4_dst="10.0.0.0/8"), (output(1),))
BAD = Flow(1, 11, (), (("teleport",),))
GROUP = Group(7, "indirect", ((output(2),),))


def walk(mod: TableMod) -> tuple[list[object], list[str]]:
    """The plan as (kind, entry) pairs and "barrier"s; an entry with a teleport action fails."""
    def encoder(kind: Kind):
        def encode(entry):
            if isinstance(entry, Flow) and entry.actions == BAD.actions:
                raise ValueError("no such action")
            return (kind, entry)
        return encode
    errors: list[str] = []
    return list(in_send_order(mod, encoder, lambda: "barrier", errors, caught=(ValueError,))), errors


def test_every_entry_field_is_sent_once_and_every_kind_has_both_codecs():
    mod = TableMod(1, add=(FLOW,), modify=(FLOW,), delete=(FLOW.key,), group_add=(GROUP,),
                   group_modify=(GROUP,), group_delete=(7,))
    steps = [step for phase in SEND_ORDER for step in phase]
    assert sorted(step.kind for step in steps) == sorted(Kind)
    fields = {name for name in msgspec.structs.asdict(mod) if name != "dpid"}
    assert sorted(id(step.entries(mod)) for step in steps) == sorted(id(getattr(mod, f)) for f in fields)
    assert set(fast_encode.ENCODERS) == set(reference.BUILDERS) == set(Kind)


def test_groups_first_then_flows_then_group_deletes_each_phase_ended_by_a_barrier():
    mod = TableMod(1, add=(FLOW,), delete=(FLOW.key,), group_add=(GROUP,), group_modify=(GROUP,),
                   group_delete=(7,))
    messages, errors = walk(mod)
    assert messages == [(Kind.GROUP_ADD, GROUP), (Kind.GROUP_MODIFY, GROUP), "barrier",
                        (Kind.FLOW_ADD, FLOW), (Kind.FLOW_DELETE, FLOW.key), "barrier",
                        (Kind.GROUP_DELETE, 7), "barrier"]
    assert errors == []


def test_a_phase_that_sent_nothing_has_no_barrier():
    messages, errors = walk(TableMod(1, add=(BAD,), group_delete=(7,)))
    assert messages == [(Kind.GROUP_DELETE, 7), "barrier"]
    assert errors == [f"cannot encode {BAD!r}: no such action"]
    assert walk(TableMod(1)) == ([], [])


def test_errors_not_caught_are_raised():
    def encoder(kind: Kind):
        def encode(entry):
            raise KeyError(entry)
        return encode
    with pytest.raises(KeyError):
        list(in_send_order(TableMod(1, add=(FLOW,)), encoder, lambda: "barrier", [], caught=(ValueError,)))
