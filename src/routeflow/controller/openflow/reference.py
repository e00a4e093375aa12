"""The reference codec: switch-neutral flows and groups <-> os-ken OpenFlow 1.3 messages. Pure: no I/O.

Encoding turns :class:`~routeflow.model.Flow`, :class:`FlowKey` and
:class:`Group` into ``OFPFlowMod``/``OFPGroupMod`` objects; decoding turns the
``OFPFlowStats``/``OFPGroupDescStats`` of a table dump back into them. The
round trip is exact for everything the flow compiler emits, so the server can
compare what it wants with what a switch holds using plain equality.

Whatever a switch holds that routeflow never writes (foreign actions,
instructions or match fields) still decodes, into ``("unknown", text)``
actions or textual values, so that it shows up as a difference instead of
breaking the dump.

os-ken's objects are exact but slow; the fast codec (:mod:`.fast_encode`,
:mod:`.fast_decode`) writes and reads the same bytes directly, hands whatever
it does not write to this one, and is tested against it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.openflow.order import Kind, in_send_order
from routeflow.model import Action, Flow, FlowKey, Group, Match
from routeflow.protocol.messages import TableMod

#: Cookie of every flow routeflow installs ("RF" in the top bytes), so a dump
#: tells routeflow's flows from anybody else's.
ROUTEFLOW_COOKIE = 0x5246_0000_0000_0000

GROUP_TYPES: dict[str, int] = {
    "all": ofp.OFPGT_ALL,
    "select": ofp.OFPGT_SELECT,
    "indirect": ofp.OFPGT_INDIRECT,
    "fast_failover": ofp.OFPGT_FF,
}
_GROUP_TYPE_NAMES = {number: name for name, number in GROUP_TYPES.items()}

_IP_FIELDS = frozenset({"ipv4_dst", "ipv4_src", "ipv6_dst", "ipv6_src", "arp_spa", "arp_tpa"})
_MAC_FIELDS = frozenset({"eth_dst", "eth_src", "arp_sha", "arp_tha"})


class DatapathLike(Protocol):
    """What os-ken message classes need from a datapath to serialise."""

    ofproto: Any
    ofproto_parser: Any


class Standalone:
    """Stand-in datapath for building and serialising messages without a switch."""

    ofproto = ofp
    ofproto_parser = parser


STANDALONE = Standalone()


# -- match -------------------------------------------------------------------------


def _encode_value(name: str, value: str | int) -> Any:
    if isinstance(value, int):
        return value
    if name in _IP_FIELDS:
        if "/" not in value:
            return str(ipaddress.ip_address(value))
        # strict: host bits set would come back from the switch cleared, and no
        # longer compare equal to what the server asked for.
        net = ipaddress.ip_network(value)
        if net.prefixlen == net.max_prefixlen:
            return str(net.network_address)
        return (str(net.network_address), str(net.netmask))
    if name in _MAC_FIELDS:
        value = value.lower()
    if "/" in value:
        val, mask = value.split("/", 1)
        return (val, mask)
    return value


def encode_match(match: Match) -> parser.OFPMatch:
    """An ``OFPMatch`` for a canonical match tuple; raise ValueError if a value is malformed."""
    return parser.OFPMatch(**{name: _encode_value(name, value) for name, value in match})


def _decode_ip(value: str, mask: str | None) -> str:
    address = ipaddress.ip_address(value)
    if mask is None:
        return str(address)
    # ipaddress takes no IPv6 netmask text, so derive the prefix length by hand.
    width = address.max_prefixlen
    hostmask = ~int(ipaddress.ip_address(mask)) & ((1 << width) - 1)
    if hostmask & (hostmask + 1):  # non-contiguous: keep it readable rather than fail
        return f"{address}/{ipaddress.ip_address(mask)}"
    prefixlen = width - hostmask.bit_length()
    if prefixlen == width:
        return str(address)
    network = ipaddress.IPv4Network if width == 32 else ipaddress.IPv6Network
    return str(network((int(address) & ~hostmask, prefixlen)))


def _decode_value(name: str, raw: Any) -> str | int:
    value, mask = raw if isinstance(raw, tuple) else (raw, None)
    if name in _IP_FIELDS and isinstance(value, str):
        return _decode_ip(value, mask if isinstance(mask, str) else None)
    if isinstance(value, str):
        value = value.lower() if name in _MAC_FIELDS else value
        return value if mask is None else f"{value}/{str(mask).lower()}"
    if isinstance(value, int) and mask is None:
        return value
    return str(value) if mask is None else f"{value}/{mask}"


def decode_match(ofp_match: parser.OFPMatch) -> Match:
    """The canonical match tuple (sorted by field name) of an ``OFPMatch``."""
    return tuple(sorted((name, _decode_value(name, raw)) for name, raw in ofp_match.items()))


# -- actions -----------------------------------------------------------------------


def encode_action(action: Action) -> Any:
    """One os-ken action object; raise ValueError for an unknown action."""
    kind = action[0]
    if kind == "output" and len(action) == 2 and isinstance(action[1], int):
        return parser.OFPActionOutput(action[1], 0)
    if kind == "controller" and len(action) == 1:
        # NO_BUFFER: the whole packet travels in the packet-in, so it can be relayed.
        return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)
    if kind == "group" and len(action) == 2 and isinstance(action[1], int):
        return parser.OFPActionGroup(action[1])
    if kind == "dec_nw_ttl" and len(action) == 1:
        return parser.OFPActionDecNwTtl()
    if kind == "push_vlan" and len(action) == 2 and isinstance(action[1], int):
        return parser.OFPActionPushVlan(action[1])
    if kind == "pop_vlan" and len(action) == 1:
        return parser.OFPActionPopVlan()
    if kind == "set_field" and len(action) == 3 and isinstance(action[1], str):
        field, value = action[1], action[2]
        encoded = _encode_value(field, value)
        if isinstance(encoded, tuple):
            raise ValueError(f"set_field cannot take a masked value: {action!r}")
        return parser.OFPActionSetField(**{field: encoded})
    raise ValueError(f"unsupported action {action!r}")


def decode_action(ofp_action: Any) -> Action:
    """The action tuple of an os-ken action; ``("unknown", text)`` for foreign ones."""
    if isinstance(ofp_action, parser.OFPActionOutput):
        if ofp_action.port == ofp.OFPP_CONTROLLER:
            return ("controller",)
        return ("output", ofp_action.port)
    if isinstance(ofp_action, parser.OFPActionGroup):
        return ("group", ofp_action.group_id)
    if isinstance(ofp_action, parser.OFPActionDecNwTtl):
        return ("dec_nw_ttl",)
    if isinstance(ofp_action, parser.OFPActionPushVlan):
        return ("push_vlan", ofp_action.ethertype)
    if isinstance(ofp_action, parser.OFPActionPopVlan):
        return ("pop_vlan",)
    if isinstance(ofp_action, parser.OFPActionSetField):
        return ("set_field", ofp_action.key, _decode_value(ofp_action.key, ofp_action.value))
    return ("unknown", str(ofp_action))


# -- flows -------------------------------------------------------------------------


def _instructions(flow: Flow) -> list[Any]:
    instructions: list[Any] = []
    if flow.actions:
        actions = [encode_action(a) for a in flow.actions]
        instructions.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
    if flow.goto is not None:
        instructions.append(parser.OFPInstructionGotoTable(flow.goto))
    return instructions  # empty: drop


def _flow_mod(dp: DatapathLike, command: int, table: int, priority: int, match: Match,
              instructions: list[Any]) -> parser.OFPFlowMod:
    return parser.OFPFlowMod(
        dp,
        cookie=ROUTEFLOW_COOKIE,
        # Deletes and modifies ignore the cookie: a stale entry with our key is
        # ours to replace, whoever put it there.
        cookie_mask=0,
        table_id=table,
        command=command,
        priority=priority,
        buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=encode_match(match),
        instructions=instructions,
    )


def flow_add(flow: Flow, dp: DatapathLike = STANDALONE) -> parser.OFPFlowMod:
    """``OFPFC_ADD`` of ``flow``."""
    return _flow_mod(dp, ofp.OFPFC_ADD, flow.table, flow.priority, flow.match, _instructions(flow))


def flow_modify(flow: Flow, dp: DatapathLike = STANDALONE) -> parser.OFPFlowMod:
    """``OFPFC_MODIFY_STRICT``: replace the instructions of the entry with ``flow``'s key."""
    return _flow_mod(dp, ofp.OFPFC_MODIFY_STRICT, flow.table, flow.priority, flow.match,
                     _instructions(flow))


def flow_delete(key: FlowKey, dp: DatapathLike = STANDALONE) -> parser.OFPFlowMod:
    """``OFPFC_DELETE_STRICT`` of the entry with exactly this key."""
    return _flow_mod(dp, ofp.OFPFC_DELETE_STRICT, key.table, key.priority, key.match, [])


def flow_from_stats(stats: parser.OFPFlowStats) -> Flow:
    """The :class:`Flow` of one entry of a flow-stats reply."""
    actions: list[Action] = []
    goto: int | None = None
    for inst in stats.instructions:
        if isinstance(inst, parser.OFPInstructionGotoTable):
            goto = inst.table_id
        elif isinstance(inst, parser.OFPInstructionActions) and inst.type == ofp.OFPIT_APPLY_ACTIONS:
            actions.extend(decode_action(a) for a in inst.actions)
        else:
            actions.append(("unknown", str(inst)))
    return Flow(stats.table_id, stats.priority, decode_match(stats.match), tuple(actions), goto)


# -- groups ------------------------------------------------------------------------


def _buckets(group: Group) -> list[parser.OFPBucket]:
    # Only select groups weigh their buckets; the spec wants 0 everywhere else.
    weight = 1 if group.type == "select" else 0
    return [
        parser.OFPBucket(weight, ofp.OFPP_ANY, ofp.OFPG_ANY, [encode_action(a) for a in bucket])
        for bucket in group.buckets
    ]


def _group_type(group: Group) -> int:
    try:
        return GROUP_TYPES[group.type]
    except KeyError:
        raise ValueError(f"unsupported group type {group.type!r}") from None


def group_add(group: Group, dp: DatapathLike = STANDALONE) -> parser.OFPGroupMod:
    """``OFPGC_ADD`` of ``group``."""
    return parser.OFPGroupMod(dp, ofp.OFPGC_ADD, _group_type(group), group.group_id, _buckets(group))


def group_modify(group: Group, dp: DatapathLike = STANDALONE) -> parser.OFPGroupMod:
    """``OFPGC_MODIFY``: replace type and buckets of group ``group.group_id``."""
    return parser.OFPGroupMod(dp, ofp.OFPGC_MODIFY, _group_type(group), group.group_id,
                              _buckets(group))


def group_delete(group_id: int, dp: DatapathLike = STANDALONE) -> parser.OFPGroupMod:
    """``OFPGC_DELETE`` of one group (the switch also drops flows pointing at it)."""
    return parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group_id, [])


def group_from_stats(stats: parser.OFPGroupDescStats) -> Group:
    """The :class:`Group` of one entry of a group-description reply."""
    kind = _GROUP_TYPE_NAMES.get(stats.type, f"type{stats.type}")
    buckets = tuple(tuple(decode_action(a) for a in b.actions) for b in stats.buckets)
    return Group(stats.group_id, kind, buckets)


# -- a whole TableMod ----------------------------------------------------------------


#: The os-ken message of each kind of TableMod entry.
BUILDERS: dict[Kind, Callable[[Any, DatapathLike], Any]] = {
    Kind.GROUP_ADD: group_add,
    Kind.GROUP_MODIFY: group_modify,
    Kind.GROUP_DELETE: group_delete,
    Kind.FLOW_ADD: flow_add,
    Kind.FLOW_MODIFY: flow_modify,
    Kind.FLOW_DELETE: flow_delete,
}


def encode_table_mod(mod: TableMod, dp: DatapathLike = STANDALONE) -> tuple[list[Any], list[str]]:
    """The messages applying ``mod`` in the order of :data:`.order.SEND_ORDER`, barriers
    included, and the entries that could not be encoded."""
    errors: list[str] = []

    def builder(kind: Kind) -> Callable[[Any], Any]:
        build = BUILDERS[kind]
        return lambda entry: build(entry, dp)

    messages = list(in_send_order(mod, builder,
                                  lambda: parser.OFPBarrierRequest(dp), errors,
                                  caught=(ValueError, TypeError, KeyError)))
    return messages, errors
