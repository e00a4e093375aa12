"""Switch-neutral flow and group entries: what the compiler produces and the
controller encodes into OpenFlow 1.3.

Everything is a hashable tuple so that desired and installed tables compare
with plain set and dict operations.

Match fields use OpenFlow OXM names (``in_port``, ``eth_type``, ``eth_dst``,
``ip_proto``, ``ipv4_dst``...). A masked IP field is written as a prefix,
``"10.0.0.0/24"``; an exact one has no ``/``.

Actions are tuples whose first element names the action:

``("output", port)``, ``("controller",)``, ``("group", group_id)``,
``("dec_nw_ttl",)``, ``("set_field", field, value)``, ``("push_vlan", ethertype)``,
``("pop_vlan",)``.
"""

from __future__ import annotations

import msgspec

Match = tuple[tuple[str, str | int], ...]
Action = tuple[str | int, ...]

CONTROLLER: Action = ("controller",)
DEC_TTL: Action = ("dec_nw_ttl",)
POP_VLAN: Action = ("pop_vlan",)
#: 802.1Q: the tag the data-plane slow path carries the switch port in.
PUSH_VLAN: Action = ("push_vlan", 0x8100)
#: OFPVID_PRESENT: a ``vlan_vid`` value (match or set_field) with this bit names a tagged frame.
VID_PRESENT = 0x1000


def output(port: int) -> Action:
    return ("output", port)


def set_field(field: str, value: str | int) -> Action:
    return ("set_field", field, value)


def group(group_id: int) -> Action:
    return ("group", group_id)


def match(**fields: str | int) -> Match:
    """A canonical match: fields sorted by name so equal matches are equal tuples."""
    return tuple(sorted(fields.items()))


class FlowKey(msgspec.Struct, frozen=True, order=True, array_like=True):
    """What identifies a flow entry in a switch: table, priority and match."""

    table: int
    priority: int
    match: Match


class Flow(msgspec.Struct, frozen=True, order=True, array_like=True):
    """A flow entry: apply ``actions``, then continue in table ``goto`` if set.

    A flow with no actions and no ``goto`` drops the packet.
    """

    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...] = ()
    goto: int | None = None

    @property
    def key(self) -> FlowKey:
        return FlowKey(self.table, self.priority, self.match)


class Group(msgspec.Struct, frozen=True, order=True, array_like=True):
    """An OpenFlow group; ``buckets`` are action lists (equal weights)."""

    group_id: int
    type: str
    buckets: tuple[tuple[Action, ...], ...]


class Table(msgspec.Struct, frozen=True):
    """The complete flow state of one datapath: flows by key and groups by id."""

    flows: dict[FlowKey, Flow] = {}
    groups: dict[int, Group] = {}


def format_action(action: Action) -> str:
    """``ovs-ofctl``-like text of one action, for status and verify output."""
    name = action[0]
    if name == "set_field":
        return f"set_field:{action[2]}->{action[1]}"
    if len(action) == 1:
        return str(name)
    return f"{name}:{action[1]}"


def format_flow(flow: Flow) -> str:
    """``ovs-ofctl``-like one-line text of a flow."""
    fields = ",".join(f"{k}={v}" for k, v in flow.match) or "any"
    acts = [format_action(a) for a in flow.actions]
    if flow.goto is not None:
        acts.append(f"goto_table:{flow.goto}")
    return f"table={flow.table},priority={flow.priority},{fields} actions={','.join(acts) or 'drop'}"


def format_group(grp: Group) -> str:
    buckets = ",".join(
        "bucket=" + ",".join(format_action(a) for a in bucket) for bucket in grp.buckets
    )
    return f"group_id={grp.group_id},type={grp.type},{buckets}"
