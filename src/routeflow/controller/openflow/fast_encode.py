"""The fast encoder: TableMod entries straight to OpenFlow 1.3 wire bytes.

The reference codec (:mod:`.reference`) builds os-ken message objects, which is
exact but costs about 100 µs a flow: too slow for a million routes. This module
writes the same bytes directly with precompiled :class:`struct.Struct` objects,
for exactly the shapes routeflow uses:

- ``OFPT_FLOW_MOD`` add, modify-strict and delete-strict with OXM matches on the
  fields of :data:`.fields.FIELDS` (IP fields exact or as prefixes) and
  apply-actions (output, controller, group, dec_nw_ttl, push_vlan, pop_vlan,
  set_field of the same fields) and goto-table instructions;
- ``OFPT_GROUP_MOD`` add, modify and delete;
- ``OFPT_BARRIER_REQUEST``.

Anything else raises :class:`Unsupported`, and :func:`encode` hands that entry to
the reference codec, so behaviour never changes: the bytes are the very bytes
os-ken serialises (the unit tests prove it). Pieces that repeat across thousands
of routes (the instructions of one next hop, the ``eth_type`` match field) are
memoised in bounded memos.
"""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from routeflow.controller.openflow import fields, reference, structs
from routeflow.controller.openflow.errors import STATS, Unsupported
from routeflow.controller.openflow.fields import (
    BY_NAME,
    ROUTE_MATCH_HEAD,
    V4_MASK_BYTES,
    V4_MASKS,
    cached_field,
    encode_field,
)
from routeflow.controller.openflow.memo import remember
from routeflow.controller.openflow.order import Kind, in_send_order
from routeflow.controller.openflow.structs import PADS, VERSION
from routeflow.model import Action, Flow, FlowKey, Group, Match
from routeflow.protocol.messages import TableMod

# Assigned, not imported: CPython 3.11 compiles a method call on an imported name (which
# it takes for a module) to a slower attribute load, a cost on every entry.
_ACTION_GROUP = structs.ACTION_GROUP
_ACTION_HDR = structs.ACTION_HDR
_ACTION_OUTPUT = structs.ACTION_OUTPUT
_ACTION_PUSH = structs.ACTION_PUSH
_BUCKET = structs.BUCKET
_FLOW_MOD = structs.FLOW_MOD
_GROUP_MOD = structs.GROUP_MOD
_HEADER = structs.HEADER
_INST_APPLY = structs.INST_APPLY
_INST_GOTO = structs.INST_GOTO
_PREFIXLEN = fields.PREFIXLEN

_NO_BUFFER = ofp.OFP_NO_BUFFER
_ANY_PORT = ofp.OFPP_ANY
_ANY_GROUP = ofp.OFPG_ANY
_COOKIE = reference.ROUTEFLOW_COOKIE
_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET


def _is_int(value: object) -> bool:
    return type(value) is int  # bool and int subclasses take the reference path


# -- match ------------------------------------------------------------------------------

#: match: field names (in the canonical, name-sorted order) -> their indexes in OXM order
_match_orders: dict[tuple[str, ...], tuple[int, ...]] = {}


def _match_order(match: Match) -> tuple[int, ...]:
    names = tuple(name for name, _ in match)
    order = _match_orders.get(names)
    if order is None:
        if len(set(names)) != len(names):
            raise Unsupported("repeated match field")
        try:
            # os-ken sorts the fields by OXM number, which puts prerequisites first.
            order = tuple(sorted(range(len(names)), key=lambda i: BY_NAME[names[i]].number))
        except KeyError as exc:
            raise Unsupported(f"match field {exc}") from None
        remember(_match_orders, names, order)
    return order


def encode_match(match: Match) -> bytes:
    """The OXM fields of ``match`` (no ``ofp_match`` header, no padding)."""
    if not match:
        return b""
    if len(match) == 2:  # the shape of every route
        (n0, v0), (n1, v1) = match
        if n0 == "eth_type" and n1 == "ipv4_dst" and v0 == 0x0800 and type(v0) is int and type(v1) is str:
            address, slash, length = v1.partition("/")
            prefixlen = _PREFIXLEN.get(length)
            if slash and prefixlen is not None and prefixlen < 32:
                try:
                    packed = _inet_pton(_AF_INET, address)
                except (OSError, ValueError):
                    raise Unsupported(f"ipv4_dst={v1!r}") from None
                if int.from_bytes(packed, "big") & ~V4_MASKS[prefixlen] & 0xFFFFFFFF:
                    raise Unsupported(f"ipv4_dst={v1!r} has host bits set")
                return ROUTE_MATCH_HEAD + packed + V4_MASK_BYTES[prefixlen]
        if n0 == "eth_type" and n1 in ("ipv4_dst", "ipv6_dst"):
            return cached_field(n0, v0) + cached_field(n1, v1)
    order = _match_order(match)
    return b"".join([cached_field(*match[i]) for i in order])


# -- actions and instructions -----------------------------------------------------------

_OUTPUT, _GROUP, _DEC_TTL, _SET_FIELD = (ofp.OFPAT_OUTPUT, ofp.OFPAT_GROUP, ofp.OFPAT_DEC_NW_TTL,
                                         ofp.OFPAT_SET_FIELD)
_PUSH_VLAN, _POP_VLAN = ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_POP_VLAN
_DEC_TTL_BYTES = _INST_APPLY.pack(_DEC_TTL, 8)  # type, len, 4 bytes of pad: same layout
_POP_VLAN_BYTES = _INST_APPLY.pack(_POP_VLAN, 8)
_CONTROLLER_BYTES = _ACTION_OUTPUT.pack(_OUTPUT, 16, ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)


def _argument(action: Action, limit: int) -> int:
    """The integer argument of a two-element action, checked against ``0..limit``."""
    value = action[1]
    assert isinstance(value, int)
    if not 0 <= value <= limit:
        raise Unsupported(f"{action[0]} {value}")
    return value


def encode_action(action: Action) -> bytes:
    """One action; raise :class:`Unsupported` for what only os-ken may judge."""
    kind = action[0]
    n = len(action)
    if kind == "output" and n == 2 and _is_int(action[1]):
        return _ACTION_OUTPUT.pack(_OUTPUT, 16, _argument(action, 0xFFFFFFFF), 0)
    if kind == "controller" and n == 1:
        return _CONTROLLER_BYTES
    if kind == "group" and n == 2 and _is_int(action[1]):
        return _ACTION_GROUP.pack(_GROUP, 8, _argument(action, 0xFFFFFFFF))
    if kind == "dec_nw_ttl" and n == 1:
        return _DEC_TTL_BYTES
    if kind == "push_vlan" and n == 2 and _is_int(action[1]):
        return _ACTION_PUSH.pack(_PUSH_VLAN, 8, _argument(action, 0xFFFF))
    if kind == "pop_vlan" and n == 1:
        return _POP_VLAN_BYTES
    if kind == "set_field" and n == 3 and type(action[1]) is str:
        value = action[2]
        if isinstance(value, str) and "/" in value:
            raise Unsupported("masked set_field")  # the reference codec raises ValueError
        tlv = encode_field(action[1], value)
        length = (4 + len(tlv) + 7) & ~7
        return _ACTION_HDR.pack(_SET_FIELD, length) + tlv + PADS[length - 4 - len(tlv)]
    raise Unsupported(f"action {action!r}")


_actions_cache: dict[tuple[Action, ...], bytes] = {}


def encode_actions(actions: tuple[Action, ...]) -> bytes:
    """An action list, memoised: one next hop's list serves thousands of routes."""
    encoded = _actions_cache.get(actions)
    if encoded is None:
        encoded = remember(_actions_cache, actions, b"".join([encode_action(a) for a in actions]))
    return encoded


_instructions_cache: dict[tuple[tuple[Action, ...], int | None], bytes] = {}


def encode_instructions(actions: tuple[Action, ...], goto: int | None) -> bytes:
    """Apply-actions (if any actions) then goto-table (if any), as the reference codec orders them."""
    key = (actions, goto)
    encoded = _instructions_cache.get(key)
    if encoded is not None:
        return encoded
    encoded = b""
    if actions:
        acts = encode_actions(actions)
        encoded = _INST_APPLY.pack(ofp.OFPIT_APPLY_ACTIONS, 8 + len(acts)) + acts
    if goto is not None:
        if not _is_int(goto) or not 0 <= goto <= 0xFF:
            raise Unsupported(f"goto {goto!r}")
        encoded += _INST_GOTO.pack(ofp.OFPIT_GOTO_TABLE, 8, goto)
    return remember(_instructions_cache, key, encoded)


# -- messages ---------------------------------------------------------------------------


def _flow_mod(xid: int, command: int, table: int, priority: int, match: Match, instructions: bytes) -> bytes:
    oxms = encode_match(match)
    match_len = 4 + len(oxms)
    pad = -match_len & 7
    try:
        head = _FLOW_MOD.pack(VERSION, ofp.OFPT_FLOW_MOD, 48 + match_len + pad + len(instructions), xid,
                             _COOKIE, 0, table, command, 0, 0, priority, _NO_BUFFER, _ANY_PORT,
                             _ANY_GROUP, 0, ofp.OFPMT_OXM, match_len)
    except struct.error as exc:
        raise Unsupported(str(exc)) from None
    return head + oxms + PADS[pad] + instructions


def flow_add(flow: Flow, xid: int) -> bytes:
    """``OFPFC_ADD`` of ``flow``, byte for byte what ``reference.flow_add`` serialises."""
    return _flow_mod(xid, ofp.OFPFC_ADD, flow.table, flow.priority, flow.match,
                     encode_instructions(flow.actions, flow.goto))


def flow_modify(flow: Flow, xid: int) -> bytes:
    """``OFPFC_MODIFY_STRICT`` of ``flow``."""
    return _flow_mod(xid, ofp.OFPFC_MODIFY_STRICT, flow.table, flow.priority, flow.match,
                     encode_instructions(flow.actions, flow.goto))


def flow_delete(key: FlowKey, xid: int) -> bytes:
    """``OFPFC_DELETE_STRICT`` of the entry with this key."""
    return _flow_mod(xid, ofp.OFPFC_DELETE_STRICT, key.table, key.priority, key.match, b"")


def _group_mod(xid: int, command: int, group: Group) -> bytes:
    kind = reference.GROUP_TYPES.get(group.type)
    if kind is None:
        raise Unsupported(f"group type {group.type!r}")
    weight = 1 if group.type == "select" else 0
    buckets = b""
    for bucket in group.buckets:
        acts = encode_actions(bucket)
        buckets += _BUCKET.pack(16 + len(acts), weight, _ANY_PORT, _ANY_GROUP) + acts
    try:
        return _GROUP_MOD.pack(VERSION, ofp.OFPT_GROUP_MOD, 16 + len(buckets), xid, command, kind,
                              group.group_id) + buckets
    except struct.error as exc:
        raise Unsupported(str(exc)) from None


def group_add(group: Group, xid: int) -> bytes:
    """``OFPGC_ADD`` of ``group``."""
    return _group_mod(xid, ofp.OFPGC_ADD, group)


def group_modify(group: Group, xid: int) -> bytes:
    """``OFPGC_MODIFY`` of ``group``."""
    return _group_mod(xid, ofp.OFPGC_MODIFY, group)


def group_delete(group_id: int, xid: int) -> bytes:
    """``OFPGC_DELETE`` of one group."""
    if not _is_int(group_id):
        raise Unsupported(f"group id {group_id!r}")
    try:
        return _GROUP_MOD.pack(VERSION, ofp.OFPT_GROUP_MOD, 16, xid, ofp.OFPGC_DELETE, ofp.OFPGT_ALL,
                              group_id)
    except struct.error as exc:
        raise Unsupported(str(exc)) from None


def barrier(xid: int) -> bytes:
    """``OFPT_BARRIER_REQUEST``."""
    return _HEADER.pack(VERSION, ofp.OFPT_BARRIER_REQUEST, ofp.OFP_HEADER_SIZE, xid)


#: The fast encoder of each kind of TableMod entry.
ENCODERS: dict[Kind, Callable[[Any, int], bytes]] = {
    Kind.GROUP_ADD: group_add,
    Kind.GROUP_MODIFY: group_modify,
    Kind.GROUP_DELETE: group_delete,
    Kind.FLOW_ADD: flow_add,
    Kind.FLOW_MODIFY: flow_modify,
    Kind.FLOW_DELETE: flow_delete,
}


def via_reference(kind: Kind, item: Any, xid: int) -> bytes:
    """The reference codec's message: built, numbered and serialised (raises what os-ken raises)."""
    msg = reference.BUILDERS[kind](item, reference.STANDALONE)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def encoder(kind: Kind, next_xid: Callable[[], int]) -> Callable[[Any], bytes]:
    """The encoder of messages of ``kind``, each numbered by ``next_xid()``: fast, or by the
    reference codec if the fast encoder refuses the entry.

    It raises what the reference codec raises for entries that cannot be encoded at all.
    """
    fast = ENCODERS[kind]

    def encode_one(item: Any) -> bytes:
        xid = next_xid()
        try:
            return fast(item, xid)
        except Unsupported:
            STATS.fallback += 1
            return via_reference(kind, item, xid)

    return encode_one


def encode(kind: Kind, item: Any, xid: int) -> bytes:
    """One message of ``kind`` numbered ``xid``, as :func:`encoder` makes it."""
    return encoder(kind, itertools.repeat(xid).__next__)(item)


class TableModWriter:
    """The wire bytes applying a :class:`TableMod`, in the order of :data:`.order.SEND_ORDER`.

    Iterating yields the bytes in chunks of about ``chunk_size`` (whole
    messages) as they are encoded, so a big change reaches the switch while
    the rest is still being encoded. Every message gets the next xid from
    ``next_xid`` as it is encoded. Afterwards ``count`` is the number of
    messages and ``errors`` lists the entries that could not be encoded (and
    were left out).
    """

    def __init__(self, mod: TableMod, next_xid: Callable[[], int], chunk_size: int = 64 * 1024) -> None:
        self.mod, self.next_xid, self.chunk_size = mod, next_xid, chunk_size
        self.count = 0
        self.errors: list[str] = []

    def _encoder(self, kind: Kind) -> Callable[[Any], bytes]:
        return encoder(kind, self.next_xid)

    def _barrier(self) -> bytes:
        return barrier(self.next_xid())

    def __iter__(self) -> Iterator[bytes]:
        chunk_size = self.chunk_size
        out = bytearray()
        count = self.count
        # The reference codec raises netaddr's errors and its own too.
        for data in in_send_order(self.mod, self._encoder, self._barrier, self.errors, caught=(Exception,)):
            out += data
            count += 1
            if len(out) >= chunk_size:
                self.count = count
                yield bytes(out)
                out = bytearray()
        self.count = count
        if out:
            yield bytes(out)


def encode_table_mod(mod: TableMod, next_xid: Callable[[], int],
                     chunk_size: int = 64 * 1024) -> tuple[list[bytes], int, list[str]]:
    """All of :class:`TableModWriter` at once: (chunks, number of messages, errors)."""
    writer = TableModWriter(mod, next_xid, chunk_size)
    chunks = list(writer)
    return chunks, writer.count, writer.errors
