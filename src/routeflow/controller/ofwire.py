"""Hand-written OpenFlow 1.3 wire format for the messages routeflow exchanges in bulk.

:mod:`routeflow.controller.ofcodec` builds os-ken message objects, which is
exact but costs about 100 µs a flow each way: too slow for a million routes.
This module writes and reads the same bytes directly with precompiled
:class:`struct.Struct` objects, for exactly the shapes routeflow uses:

- ``OFPT_FLOW_MOD`` add, modify-strict and delete-strict with OXM matches on
  ``in_port eth_dst eth_src eth_type ip_proto ipv4_src ipv4_dst tcp_src
  tcp_dst udp_src udp_dst icmpv4_type icmpv4_code ipv6_src ipv6_dst
  icmpv6_type icmpv6_code`` (IP fields exact or as prefixes) and apply-actions
  (output, controller, group, dec_nw_ttl, set_field of the same fields) and
  goto-table instructions;
- ``OFPT_GROUP_MOD`` add, modify and delete;
- ``OFPT_BARRIER_REQUEST``;
- the bodies of ``OFPMP_FLOW`` and ``OFPMP_GROUP_DESC`` multipart replies.

Anything else falls back to the os-ken path of :mod:`ofcodec`, one entry at a
time, so behaviour never changes: the encoder produces the very bytes os-ken
serialises, and the decoder the very :class:`Flow` and :class:`Group` values
``ofcodec.flow_from_stats``/``group_from_stats`` give (the unit tests prove
both). Encoded pieces that repeat across thousands of routes (the instructions
for one next hop, the ``eth_type`` match field) and decoded ones (the actions
of one instruction block) are memoised in bounded caches.

What a switch sends is untrusted. The decoders are total: they return values
or raise :class:`DecodeError`, in time and memory proportional to the reply,
and an entry reaches os-ken's parsers (which trust every length they read)
only once every nested length in it has been checked. :func:`install_parser_guards`
keeps os-ken's own parsing of switch messages bounded the same way.
"""

from __future__ import annotations

import ipaddress
import logging
import operator
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from os_ken.ofproto import nicira_ext, ofproto_common, ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller import ofcodec
from routeflow.model import Action, Flow, FlowKey, Group, Match
from routeflow.protocol.messages import TableMod

LOG = logging.getLogger(__name__)
VERSION = ofp.OFP_VERSION
#: Entries each memo may hold before it is emptied (bounds memory on odd tables).
CACHE_LIMIT = 1 << 16
#: Bytes of keys a memo of raw instruction blocks or buckets may hold (a route's block is 64).
MEMO_BYTES = 1 << 20


class Unsupported(Exception):
    """A shape this module does not write or read: use the os-ken path."""


class DecodeError(ValueError):
    """What a switch sent is not well-formed OpenFlow 1.3: the one error the decoders raise.

    The text says what is wrong and where (a byte offset in the buffer). A
    ValueError, so callers that caught ValueError before still do.
    """


# -- structures ----------------------------------------------------------------------

_HEADER = struct.Struct("!BBHI")
# header, flow-mod body up to flags and pad, then the match's type and length
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2xHH")
_GROUP_MOD = struct.Struct("!BBHIHBxI")
_BUCKET = struct.Struct("!HHII4x")
_ACTION_OUTPUT = struct.Struct("!HHIH6x")
_ACTION_GROUP = struct.Struct("!HHI")
_ACTION_HDR = struct.Struct("!HH")
_ACTION_PUSH = struct.Struct("!HHH2x")
_INST_APPLY = struct.Struct("!HH4x")
_INST_GOTO = struct.Struct("!HHB3x")
_OXM_HDR = struct.Struct("!I")
_U8, _U16, _U32 = struct.Struct("!B"), struct.Struct("!H"), struct.Struct("!I")
_MP_REPLY = struct.Struct("!HH4x")  # after the header: type, flags
# length, table_id, (durations), priority, (timeouts, flags, cookie, counters), match type and length
_FLOW_STATS = struct.Struct("!HBx8xH34xHH")
_FLOW_STATS_SIZE = ofp.OFP_FLOW_STATS_0_SIZE  # 48, then the match
_MATCH_HDR = struct.Struct("!HH")
_GROUP_DESC = struct.Struct("!HBxI")
_PADS = tuple(bytes(n) for n in range(8))

_NO_BUFFER = ofp.OFP_NO_BUFFER
_ANY_PORT = ofp.OFPP_ANY
_ANY_GROUP = ofp.OFPG_ANY
_CONTROLLER_PORT = ofp.OFPP_CONTROLLER
_COOKIE = ofcodec.ROUTEFLOW_COOKIE
_BARRIER_SIZE = ofp.OFP_HEADER_SIZE

_GROUP_TYPE_NAMES = {number: name for name, number in ofcodec.GROUP_TYPES.items()}

# -- OXM fields ------------------------------------------------------------------------
#
# name -> (OXM field number, kind, width). Kinds: "int", "mac", "ip4", "ip6".
_FIELDS: dict[str, tuple[int, str, int]] = {
    "in_port": (ofp.OFPXMT_OFB_IN_PORT, "int", 4),
    "eth_dst": (ofp.OFPXMT_OFB_ETH_DST, "mac", 6),
    "eth_src": (ofp.OFPXMT_OFB_ETH_SRC, "mac", 6),
    "eth_type": (ofp.OFPXMT_OFB_ETH_TYPE, "int", 2),
    "vlan_vid": (ofp.OFPXMT_OFB_VLAN_VID, "int", 2),
    "ip_proto": (ofp.OFPXMT_OFB_IP_PROTO, "int", 1),
    "ipv4_src": (ofp.OFPXMT_OFB_IPV4_SRC, "ip4", 4),
    "ipv4_dst": (ofp.OFPXMT_OFB_IPV4_DST, "ip4", 4),
    "tcp_src": (ofp.OFPXMT_OFB_TCP_SRC, "int", 2),
    "tcp_dst": (ofp.OFPXMT_OFB_TCP_DST, "int", 2),
    "udp_src": (ofp.OFPXMT_OFB_UDP_SRC, "int", 2),
    "udp_dst": (ofp.OFPXMT_OFB_UDP_DST, "int", 2),
    "icmpv4_type": (ofp.OFPXMT_OFB_ICMPV4_TYPE, "int", 1),
    "icmpv4_code": (ofp.OFPXMT_OFB_ICMPV4_CODE, "int", 1),
    "ipv6_src": (ofp.OFPXMT_OFB_IPV6_SRC, "ip6", 16),
    "ipv6_dst": (ofp.OFPXMT_OFB_IPV6_DST, "ip6", 16),
    "icmpv6_type": (ofp.OFPXMT_OFB_ICMPV6_TYPE, "int", 1),
    "icmpv6_code": (ofp.OFPXMT_OFB_ICMPV6_CODE, "int", 1),
}
_BY_NUMBER = {num: (name, kind, width) for name, (num, kind, width) in _FIELDS.items()}
_INT_PACK = {1: _U8.pack, 2: _U16.pack, 4: _U32.pack}


def _oxm_header(num: int, width: int, masked: bool = False) -> bytes:
    length = width * 2 if masked else width
    return _OXM_HDR.pack(ofp.OFPXMC_OPENFLOW_BASIC << 16 | num << 9 | int(masked) << 8 | length)


_EXACT_HDR = {name: _oxm_header(num, width) for name, (num, _, width) in _FIELDS.items()}
_MASKED_HDR = {name: _oxm_header(num, width, True) for name, (num, _, width) in _FIELDS.items()}
_V4_MASKS = tuple(((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF) for n in range(33))
_V4_MASK_BYTES = tuple(_U32.pack(m) for m in _V4_MASKS)
_V4_PREFIX_BY_MASK = {mask: n for n, mask in enumerate(_V4_MASK_BYTES)}
_PREFIXLEN = {str(n): n for n in range(129)}
_inet_pton = socket.inet_pton
_inet_ntoa = socket.inet_ntoa
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_MAC_SEPARATORS = ":::::"
# A route's match: eth_type=0x0800 then a masked ipv4_dst.
_ROUTE_MATCH_HEAD = _EXACT_HDR["eth_type"] + b"\x08\x00" + _MASKED_HDR["ipv4_dst"]
_ROUTE_MATCH_LEN = 4 + len(_ROUTE_MATCH_HEAD) + 8
_ETH_TYPE_IPV4 = ("eth_type", 0x0800)


def _is_int(value: object) -> bool:
    return type(value) is int  # bool and int subclasses take the os-ken path


def _encode_int(name: str, width: int, value: object) -> bytes:
    if not _is_int(value):
        raise Unsupported(f"{name}={value!r}")
    assert isinstance(value, int)
    if not 0 <= value < 1 << (8 * width):
        raise Unsupported(f"{name}={value!r} out of range")
    return _EXACT_HDR[name] + _INT_PACK[width](value)


def _encode_mac(name: str, value: object) -> bytes:
    if type(value) is not str or len(value) != 17 or value[2::3] != _MAC_SEPARATORS:
        raise Unsupported(f"{name}={value!r}")
    try:
        raw = bytes.fromhex(value.replace(":", ""))
    except ValueError:
        raise Unsupported(f"{name}={value!r}") from None
    if len(raw) != 6:
        raise Unsupported(f"{name}={value!r}")
    return _EXACT_HDR[name] + raw


def _encode_ip(name: str, kind: str, value: object) -> bytes:
    """An exact or prefix-masked IP field, as ``ofcodec._encode_value`` and os-ken write it."""
    if type(value) is not str:
        raise Unsupported(f"{name}={value!r}")
    family, width = (_AF_INET, 32) if kind == "ip4" else (_AF_INET6, 128)
    address, slash, length = value.partition("/")
    try:
        packed = _inet_pton(family, address)
    except (OSError, ValueError):
        raise Unsupported(f"{name}={value!r}") from None
    if kind == "ip6" and "." in address:
        raise Unsupported(f"{name}={value!r}")  # embedded IPv4: leave it to os-ken
    if not slash:
        return _EXACT_HDR[name] + packed
    prefixlen = _PREFIXLEN.get(length)
    if prefixlen is None or prefixlen > width:
        raise Unsupported(f"{name}={value!r}")  # netmask text, bad length: os-ken's way
    if prefixlen == width:
        return _EXACT_HDR[name] + packed
    if kind == "ip4":
        mask = _V4_MASKS[prefixlen]
        if int.from_bytes(packed, "big") & ~mask & 0xFFFFFFFF:
            raise Unsupported(f"{name}={value!r} has host bits set")
        return _MASKED_HDR[name] + packed + _V4_MASK_BYTES[prefixlen]
    mask = ((1 << 128) - 1) ^ ((1 << (128 - prefixlen)) - 1)
    if int.from_bytes(packed, "big") & ~mask:
        raise Unsupported(f"{name}={value!r} has host bits set")
    return _MASKED_HDR[name] + packed + mask.to_bytes(16, "big")


_field_cache: dict[tuple[str, object], bytes] = {}


def encode_field(name: str, value: object) -> bytes:
    """One exact or masked OXM TLV; raise :class:`Unsupported` for anything else."""
    spec = _FIELDS.get(name)
    if spec is None:
        raise Unsupported(f"match field {name!r}")
    _, kind, width = spec
    if kind == "int":
        return _encode_int(name, width, value)
    if kind == "mac":
        if type(value) is not str:
            raise Unsupported(f"{name}={value!r}")
        return _encode_mac(name, value.lower())
    return _encode_ip(name, kind, value)


def _cached_field(name: str, value: object) -> bytes:
    """:func:`encode_field`, memoised for everything but IP addresses (one per route)."""
    key = (name, value)
    if type(value) is int or name in ("eth_dst", "eth_src"):
        tlv = _field_cache.get(key)
        if tlv is None:
            tlv = encode_field(name, value)
            if len(_field_cache) >= CACHE_LIMIT:
                _field_cache.clear()
            _field_cache[key] = tlv
        return tlv
    return encode_field(name, value)


# match: field names (in the canonical, name-sorted order) -> their indexes in OXM order
_match_orders: dict[tuple[str, ...], tuple[int, ...]] = {}


def _match_order(match: Match) -> tuple[int, ...]:
    names = tuple(name for name, _ in match)
    order = _match_orders.get(names)
    if order is None:
        if len(set(names)) != len(names):
            raise Unsupported("repeated match field")
        try:
            # os-ken sorts the fields by OXM number, which puts prerequisites first.
            order = tuple(sorted(range(len(names)), key=lambda i: _FIELDS[names[i]][0]))
        except KeyError as exc:
            raise Unsupported(f"match field {exc}") from None
        if len(_match_orders) >= CACHE_LIMIT:
            _match_orders.clear()
        _match_orders[names] = order
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
                if int.from_bytes(packed, "big") & ~_V4_MASKS[prefixlen] & 0xFFFFFFFF:
                    raise Unsupported(f"ipv4_dst={v1!r} has host bits set")
                return _ROUTE_MATCH_HEAD + packed + _V4_MASK_BYTES[prefixlen]
        if n0 == "eth_type" and n1 in ("ipv4_dst", "ipv6_dst"):
            return _cached_field(n0, v0) + _cached_field(n1, v1)
    order = _match_order(match)
    return b"".join([_cached_field(*match[i]) for i in order])


# -- actions and instructions -----------------------------------------------------------

_OUTPUT, _GROUP, _DEC_TTL, _SET_FIELD = (ofp.OFPAT_OUTPUT, ofp.OFPAT_GROUP, ofp.OFPAT_DEC_NW_TTL,
                                         ofp.OFPAT_SET_FIELD)
_PUSH_VLAN, _POP_VLAN = ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_POP_VLAN
_DEC_TTL_BYTES = _INST_APPLY.pack(_DEC_TTL, 8)  # type, len, 4 bytes of pad: same layout
_POP_VLAN_BYTES = _INST_APPLY.pack(_POP_VLAN, 8)
_CONTROLLER_BYTES = _ACTION_OUTPUT.pack(_OUTPUT, 16, _CONTROLLER_PORT, ofp.OFPCML_NO_BUFFER)


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
            raise Unsupported("masked set_field")  # os-ken path raises ValueError
        tlv = encode_field(action[1], value)
        length = (4 + len(tlv) + 7) & ~7
        return _ACTION_HDR.pack(_SET_FIELD, length) + tlv + _PADS[length - 4 - len(tlv)]
    raise Unsupported(f"action {action!r}")


_actions_cache: dict[tuple[Action, ...], bytes] = {}


def encode_actions(actions: tuple[Action, ...]) -> bytes:
    """An action list, memoised: one next hop's list serves thousands of routes."""
    encoded = _actions_cache.get(actions)
    if encoded is None:
        encoded = b"".join([encode_action(a) for a in actions])
        if len(_actions_cache) >= CACHE_LIMIT:
            _actions_cache.clear()
        _actions_cache[actions] = encoded
    return encoded


_instructions_cache: dict[tuple[tuple[Action, ...], int | None], bytes] = {}


def encode_instructions(actions: tuple[Action, ...], goto: int | None) -> bytes:
    """Apply-actions (if any actions) then goto-table (if any), as ``ofcodec`` orders them."""
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
    if len(_instructions_cache) >= CACHE_LIMIT:
        _instructions_cache.clear()
    _instructions_cache[key] = encoded
    return encoded


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
    return head + oxms + _PADS[pad] + instructions


def flow_add(flow: Flow, xid: int) -> bytes:
    """``OFPFC_ADD`` of ``flow``, byte for byte what ``ofcodec.flow_add`` serialises."""
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
    kind = ofcodec.GROUP_TYPES.get(group.type)
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
    return _group_mod(xid, ofp.OFPGC_ADD, group)


def group_modify(group: Group, xid: int) -> bytes:
    return _group_mod(xid, ofp.OFPGC_MODIFY, group)


def group_delete(group_id: int, xid: int) -> bytes:
    if not _is_int(group_id):
        raise Unsupported(f"group id {group_id!r}")
    try:
        return _GROUP_MOD.pack(VERSION, ofp.OFPT_GROUP_MOD, 16, xid, ofp.OFPGC_DELETE, ofp.OFPGT_ALL,
                               group_id)
    except struct.error as exc:
        raise Unsupported(str(exc)) from None


def barrier(xid: int) -> bytes:
    return _HEADER.pack(VERSION, ofp.OFPT_BARRIER_REQUEST, _BARRIER_SIZE, xid)


# fast encoder, os-ken builder of the same message
_ENCODERS: dict[str, tuple[Callable[[Any, int], bytes], Callable[[Any, Any], Any]]] = {
    "flow_add": (flow_add, ofcodec.flow_add),
    "flow_modify": (flow_modify, ofcodec.flow_modify),
    "flow_delete": (flow_delete, ofcodec.flow_delete),
    "group_add": (group_add, ofcodec.group_add),
    "group_modify": (group_modify, ofcodec.group_modify),
    "group_delete": (group_delete, ofcodec.group_delete),
}


def via_os_ken(build: Callable[[Any, Any], Any], item: Any, xid: int) -> bytes:
    """The os-ken path: build, number and serialise one message (raises what os-ken raises)."""
    msg = build(item, ofcodec.STANDALONE)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


class Stats:
    """How many messages took which path (for logs, tests and the benchmark)."""

    def __init__(self) -> None:
        self.fast = 0
        self.fallback = 0


STATS = Stats()


def encode(kind: str, item: Any, xid: int) -> bytes:
    """One message of ``kind`` (``flow_add``, ``group_delete``...): fast, or via os-ken.

    Raises what the os-ken path raises for entries that cannot be encoded at all.
    """
    fast, build = _ENCODERS[kind]
    try:
        data = fast(item, xid)
    except Unsupported:
        STATS.fallback += 1
        return via_os_ken(build, item, xid)
    STATS.fast += 1
    return data


class TableModWriter:
    """The wire bytes applying a :class:`TableMod`, in the order and phases of ``ofcodec.encode_table_mod``.

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

    def __iter__(self) -> Iterator[bytes]:
        mod, next_xid, chunk_size, errors = self.mod, self.next_xid, self.chunk_size, self.errors
        out = bytearray()
        phases: list[list[tuple[str, Sequence[Any]]]] = [
            [("group_add", mod.group_add), ("group_modify", mod.group_modify)],
            [("flow_add", mod.add), ("flow_modify", mod.modify), ("flow_delete", mod.delete)],
            [("group_delete", mod.group_delete)],
        ]
        for phase in phases:
            sent = False
            for kind, items in phase:
                fast, build = _ENCODERS[kind]
                for item in items:
                    xid = next_xid()
                    try:
                        try:
                            out += fast(item, xid)
                            STATS.fast += 1
                        except Unsupported:
                            STATS.fallback += 1
                            out += via_os_ken(build, item, xid)
                    except Exception as exc:  # noqa: BLE001 - os-ken raises netaddr's and its own too
                        # One bad entry must not cost the rest of the batch.
                        errors.append(f"cannot encode {item!r}: {exc}")
                        continue
                    sent = True
                    self.count += 1
                    if len(out) >= chunk_size:
                        yield bytes(out)
                        out = bytearray()
            if sent:
                out += barrier(next_xid())
                self.count += 1
        if out:
            yield bytes(out)


def encode_table_mod(mod: TableMod, next_xid: Callable[[], int],
                     chunk_size: int = 64 * 1024) -> tuple[list[bytes], int, list[str]]:
    """All of :class:`TableModWriter` at once: (chunks, number of messages, errors)."""
    writer = TableModWriter(mod, next_xid, chunk_size)
    chunks = list(writer)
    return chunks, writer.count, writer.errors


# -- decoding ----------------------------------------------------------------------------

def _ip_text(kind: str, raw: bytes) -> str:
    if kind == "ip4":
        return _inet_ntoa(raw)
    return str(ipaddress.IPv6Address(raw))


def _decode_ip(kind: str, value: bytes, mask: bytes | None) -> str:
    """``ofcodec._decode_ip`` from the raw bytes: exact text, prefix, or ``addr/mask``."""
    if mask is None:
        return _ip_text(kind, value)
    if kind == "ip4":
        prefixlen = _V4_PREFIX_BY_MASK.get(mask)
        if prefixlen is not None:
            if prefixlen == 32:
                return _inet_ntoa(value)
            net = int.from_bytes(value, "big") & _V4_MASKS[prefixlen]
            return f"{_inet_ntoa(_U32.pack(net))}/{prefixlen}"
        return f"{_inet_ntoa(value)}/{_inet_ntoa(mask)}"
    width = 128
    hostmask = ~int.from_bytes(mask, "big") & ((1 << width) - 1)
    if hostmask & (hostmask + 1):
        return f"{_ip_text(kind, value)}/{_ip_text(kind, mask)}"
    prefixlen = width - hostmask.bit_length()
    if prefixlen == width:
        return _ip_text(kind, value)
    return str(ipaddress.IPv6Network((int.from_bytes(value, "big") & ~hostmask, prefixlen)))


def _decode_tlv(buf: bytes, offset: int, end: int) -> tuple[str, str | int, int]:
    """(name, canonical value, next offset) of the OXM TLV at ``offset``."""
    if offset + 4 > end:
        raise Unsupported("truncated OXM")
    (header,) = _OXM_HDR.unpack_from(buf, offset)
    length = header & 0xFF
    nxt = offset + 4 + length
    if header >> 16 != ofp.OFPXMC_OPENFLOW_BASIC or nxt > end:
        raise Unsupported("OXM class")
    spec = _BY_NUMBER.get(header >> 9 & 0x7F)
    if spec is None:
        raise Unsupported("OXM field")
    name, kind, width = spec
    masked = header & 0x100
    if length != (width * 2 if masked else width):
        raise Unsupported("OXM length")
    start = offset + 4
    value = buf[start:start + width]
    mask = buf[start + width:nxt] if masked else None
    if kind == "int":
        number = int.from_bytes(value, "big")
        if mask is None:
            return name, number, nxt
        return name, f"{number}/{int.from_bytes(mask, 'big')}", nxt
    if kind == "mac":
        text = value.hex(":")
        return name, text if mask is None else f"{text}/{mask.hex(':')}", nxt
    return name, _decode_ip(kind, value, mask), nxt


_tlv_cache: dict[bytes, tuple[str, str | int]] = {}
_name_of = operator.itemgetter(0)


_V4_HEADERS = {_EXACT_HDR[name]: (name, False) for name in ("ipv4_src", "ipv4_dst")}
_V4_HEADERS.update({_MASKED_HDR[name]: (name, True) for name in ("ipv4_src", "ipv4_dst")})
_PREFIX_SUFFIX = tuple(f"/{n}" for n in range(33))


def decode_match(buf: bytes, offset: int, end: int) -> Match:
    """The canonical match tuple of the OXM fields in ``buf[offset:end]``."""
    fields: list[tuple[str, str | int]] = []
    cache = _tlv_cache
    while offset < end:
        if offset + 4 > end:
            raise Unsupported("truncated OXM")
        nxt = offset + 4 + buf[offset + 3]
        if nxt > end:
            raise Unsupported("OXM length")
        raw = buf[offset:nxt]
        # Everything but IP addresses repeats: memoise by the TLV's bytes.
        item = cache.get(raw)
        if item is None:
            v4 = _V4_HEADERS.get(raw[:4])
            if v4 is not None:  # one per route: the hot path, inline
                name, masked = v4
                value = raw[4:8]
                if not masked:
                    item = (name, _inet_ntoa(value))
                else:
                    mask = raw[8:12]
                    prefixlen = _V4_PREFIX_BY_MASK.get(mask)
                    if prefixlen is None:
                        item = (name, f"{_inet_ntoa(value)}/{_inet_ntoa(mask)}")
                    elif prefixlen == 32:
                        item = (name, _inet_ntoa(value))
                    else:
                        number = int.from_bytes(value, "big")
                        net = number & _V4_MASKS[prefixlen]
                        if net != number:
                            value = _U32.pack(net)
                        item = (name, _inet_ntoa(value) + _PREFIX_SUFFIX[prefixlen])
            else:
                name, decoded, _ = _decode_tlv(buf, offset, end)
                item = (name, decoded)
                if _FIELDS[name][1] not in ("ip4", "ip6"):
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[raw] = item
        fields.append(item)
        offset = nxt
    if len(fields) > 1:
        fields.sort(key=_name_of)
        for i in range(1, len(fields)):
            if fields[i][0] == fields[i - 1][0]:
                raise Unsupported("repeated match field")
    return tuple(fields)


def decode_actions(buf: bytes, offset: int, end: int) -> list[Action]:
    """The actions in ``buf[offset:end]``; :class:`Unsupported` for anything but the shapes routeflow writes."""
    actions: list[Action] = []
    while offset < end:
        if offset + 4 > end:
            raise Unsupported("truncated action")
        kind, length = _ACTION_HDR.unpack_from(buf, offset)
        if length < 8 or length & 7 or offset + length > end:
            raise Unsupported("action length")
        if kind == _OUTPUT and length == 16:
            (port,) = _U32.unpack_from(buf, offset + 4)
            actions.append(("controller",) if port == _CONTROLLER_PORT else ("output", port))
        elif kind == _GROUP and length == 8:
            actions.append(("group", _U32.unpack_from(buf, offset + 4)[0]))
        elif kind == _DEC_TTL and length == 8:
            actions.append(("dec_nw_ttl",))
        elif kind == _PUSH_VLAN and length == 8:
            actions.append(("push_vlan", _U16.unpack_from(buf, offset + 4)[0]))
        elif kind == _POP_VLAN and length == 8:
            actions.append(("pop_vlan",))
        elif kind == _SET_FIELD:
            tlv_end = offset + 8 + buf[offset + 7]
            if tlv_end > offset + length or buf[offset + 6] & 1:
                raise Unsupported("set_field")
            name, value, _ = _decode_tlv(buf, offset + 4, tlv_end)
            actions.append(("set_field", name, value))
        else:
            raise Unsupported(f"action type {kind}")
        offset += length
    return actions


_V = TypeVar("_V")
_T = TypeVar("_T")


class _Memo(dict[bytes, _V]):
    """A decoding memo keyed by raw bytes from the switch, bounded in entries and in key bytes.

    A count alone would not bound it: a switch chooses the keys, up to 64 KiB each.
    """

    key_bytes = 0

    def remember(self, key: bytes, value: _V) -> None:
        if len(self) >= CACHE_LIMIT or self.key_bytes + len(key) > MEMO_BYTES:
            self.clear()
            self.key_bytes = 0
        self[key] = value
        self.key_bytes += len(key)

_inst_cache: _Memo[tuple[tuple[Action, ...], int | None]] = _Memo()


def decode_instructions(buf: bytes, offset: int, end: int) -> tuple[tuple[Action, ...], int | None]:
    """(actions, goto) of an instruction list, as ``ofcodec.flow_from_stats`` reads it."""
    raw = buf[offset:end]
    cached = _inst_cache.get(raw)
    if cached is not None:
        return cached
    actions: list[Action] = []
    goto: int | None = None
    while offset < end:
        if offset + 4 > end:
            raise Unsupported("truncated instruction")
        kind, length = _ACTION_HDR.unpack_from(buf, offset)
        if length < 8 or length & 7 or offset + length > end:
            raise Unsupported("instruction length")
        if kind == ofp.OFPIT_GOTO_TABLE and length == 8:
            goto = buf[offset + 4]
        elif kind == ofp.OFPIT_APPLY_ACTIONS:
            actions += decode_actions(buf, offset + 8, offset + length)
        else:
            raise Unsupported(f"instruction type {kind}")  # os-ken's text for ("unknown", ...)
        offset += length
    result = (tuple(actions), goto)
    _inst_cache.remember(raw, result)
    return result


def _body_end(buf: bytes, offset: int, end: int | None) -> int:
    """``end`` (by default the buffer's), checked to lie between ``offset`` and the buffer's end."""
    end = len(buf) if end is None else end
    if not 0 <= offset <= end <= len(buf):
        raise DecodeError(f"no reply body at {offset}..{end} in {len(buf)} bytes")
    return end


def decode_flow_stats(buf: bytes, offset: int = ofp.OFP_MULTIPART_REPLY_SIZE,
                      end: int | None = None) -> list[Flow]:
    """The flows of a flow-stats reply body (by default: of a whole reply message).

    Raises :class:`DecodeError` (and nothing else) if any length in it is wrong: a
    reply decodes whole or not at all, in time and memory proportional to its size.
    """
    buf = bytes(buf)  # a no-op for bytes; memo keys must be hashable
    end = _body_end(buf, offset, end)
    flows: list[Flow] = []
    append = flows.append
    unpack = _FLOW_STATS.unpack_from
    inst_cache = _inst_cache
    while offset < end:
        if offset + _FLOW_STATS_SIZE + 8 > end:
            raise DecodeError(f"truncated flow stats entry at {offset}")
        length, table, priority, match_type, match_len = unpack(buf, offset)
        entry_end = offset + length
        if length < _FLOW_STATS_SIZE + 8 or length & 7 or entry_end > end:
            raise DecodeError(f"bad flow stats entry length {length} at {offset}")
        match_start = offset + _FLOW_STATS_SIZE
        inst_start = match_start + ((match_len + 7) & ~7)
        try:
            if match_type != ofp.OFPMT_OXM or match_len < 4 or inst_start > entry_end:
                raise Unsupported("match")
            match: Match | None = None
            if (match_len == _ROUTE_MATCH_LEN
                    and buf[match_start + 4:match_start + 14] == _ROUTE_MATCH_HEAD):  # a route: inline
                value = buf[match_start + 14:match_start + 18]
                prefixlen = _V4_PREFIX_BY_MASK.get(buf[match_start + 18:match_start + 22])
                if (prefixlen is not None and prefixlen < 32
                        and not int.from_bytes(value, "big") & ~_V4_MASKS[prefixlen] & 0xFFFFFFFF):
                    match = (_ETH_TYPE_IPV4, ("ipv4_dst", _inet_ntoa(value) + _PREFIX_SUFFIX[prefixlen]))
            if match is None:
                match = decode_match(buf, match_start + 4, match_start + match_len) if match_len > 4 else ()
            instructions = inst_cache.get(buf[inst_start:entry_end])
            if instructions is None:
                instructions = decode_instructions(buf, inst_start, entry_end)
            append(Flow(table, priority, match, *instructions))
        except Unsupported:
            STATS.fallback += 1
            append(_via_os_ken(parser.OFPFlowStats, ofcodec.flow_from_stats, buf, offset, entry_end)[0])
        offset = entry_end
    return flows


_bucket_cache: _Memo[tuple[Action, ...]] = _Memo()


def _group_entry(buf: bytes, offset: int, end: int) -> Group:
    _, kind, group_id = _GROUP_DESC.unpack_from(buf, offset)
    buckets: list[tuple[Action, ...]] = []
    pos = offset + ofp.OFP_GROUP_DESC_STATS_SIZE
    while pos < end:
        if pos + ofp.OFP_BUCKET_SIZE > end:
            raise Unsupported("truncated bucket")
        (length,) = _U16.unpack_from(buf, pos)
        if length < ofp.OFP_BUCKET_SIZE or length & 7 or pos + length > end:
            raise Unsupported("bucket length")
        raw = buf[pos + ofp.OFP_BUCKET_SIZE:pos + length]
        actions = _bucket_cache.get(raw)
        if actions is None:
            actions = tuple(decode_actions(raw, 0, len(raw)))
            _bucket_cache.remember(raw, actions)
        buckets.append(actions)
        pos += length
    return Group(group_id, _GROUP_TYPE_NAMES.get(kind, f"type{kind}"), tuple(buckets))


def decode_group_desc(buf: bytes, offset: int = ofp.OFP_MULTIPART_REPLY_SIZE,
                      end: int | None = None) -> list[Group]:
    """The groups of a group-description reply body (by default: of a whole reply message).

    Raises :class:`DecodeError` (and nothing else) as :func:`decode_flow_stats` does.
    """
    buf = bytes(buf)
    end = _body_end(buf, offset, end)
    groups: list[Group] = []
    while offset < end:
        entry_end = _entry_end(buf, offset, end, ofp.OFP_GROUP_DESC_STATS_SIZE, "group desc entry")
        try:
            groups.append(_group_entry(buf, offset, entry_end))
        except Unsupported:
            STATS.fallback += 1
            groups.append(_via_os_ken(parser.OFPGroupDescStats, ofcodec.group_from_stats, buf, offset,
                                      entry_end)[0])
        offset = entry_end
    return groups


def reply_body_span(buf: bytes) -> tuple[int, int]:
    """(multipart type, end of the message) of a raw multipart reply."""
    if len(buf) < ofp.OFP_MULTIPART_REPLY_SIZE:
        raise DecodeError(f"multipart reply of {len(buf)} bytes")
    _, _, length, _ = _HEADER.unpack_from(buf)
    (kind, _) = _MP_REPLY.unpack_from(buf, ofp.OFP_HEADER_SIZE)
    return kind, min(length, len(buf))


# -- checking a whole entry before os-ken reads it -----------------------------------------
#
# os-ken's parsers trust every length they read: a zero-length bucket, instruction or
# action makes them loop forever, appending; a length past the entry makes them read the
# next one. The fast path above refuses (Unsupported) everything but what routeflow
# writes, and whatever it refuses is checked here, whole and down to the last nested
# length, before os-ken sees it. Checked means: every structure at least its header, a
# multiple of 8 where OpenFlow pads to 8, within its enclosing structure, and of the size
# os-ken will step over, so that os-ken's loops advance exactly as these do.

_ACTION_SIZE = 8  # ofp_action_header with its pad: the shortest action, and the shortest instruction
#: The size os-ken's class for each action type reads and steps over whatever the length
#: says (set_field and experimenter actions are the ones it steps over by their length).
_ACTION_SIZES = {kind: cls.cls_action_len for kind, cls in parser.OFPAction._ACTION_TYPES.items()
                 if kind not in (ofp.OFPAT_SET_FIELD, ofp.OFPAT_EXPERIMENTER)}
_INSTRUCTION_SIZES = {
    ofp.OFPIT_GOTO_TABLE: ofp.OFP_INSTRUCTION_GOTO_TABLE_SIZE,
    ofp.OFPIT_WRITE_METADATA: ofp.OFP_INSTRUCTION_WRITE_METADATA_SIZE,
    ofp.OFPIT_METER: ofp.OFP_INSTRUCTION_METER_SIZE,
}
_ACTION_LISTS = frozenset({ofp.OFPIT_WRITE_ACTIONS, ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_CLEAR_ACTIONS})
_NX_ID = ofproto_common.NX_EXPERIMENTER_ID
_NX_ACTION_SIZE = 16  # experimenter action header and a subtype, padded
_NX_CT_SIZE = 24  # where the actions of a Nicira ct action begin
#: Action lists inside actions (ct) os-ken may read: it recurses once a level.
NESTING_LIMIT = 4


def _check_oxm(buf: bytes, offset: int, end: int) -> int:
    """Check the OXM TLV at ``offset``: a value, and within ``end``. Return where it ends."""
    if offset + 4 > end:
        raise DecodeError(f"truncated OXM at {offset}")
    (header,) = _OXM_HDR.unpack_from(buf, offset)
    length = header & 0xFF
    value = length - (4 if header >> 16 == ofp.OFPXMC_EXPERIMENTER else 0)  # after the experimenter id
    if value <= 0 or (header & 0x100 and value & 1):  # a mask is as long as the value
        raise DecodeError(f"bad OXM length {length} at {offset}")
    nxt = offset + 4 + length
    if nxt > end:
        raise DecodeError(f"OXM at {offset} ends past its match or action, at {nxt}")
    return nxt


def _check_match(buf: bytes, offset: int, end: int) -> int:
    """Check the ``ofp_match`` at ``offset`` and its TLVs; return where it ends, padded to 8."""
    if offset + 4 > end:
        raise DecodeError(f"truncated match at {offset}")
    kind, length = _MATCH_HDR.unpack_from(buf, offset)
    if kind != ofp.OFPMT_OXM:
        raise DecodeError(f"match type {kind} at {offset}")
    padded = offset + ((length + 7) & ~7)
    if length < 4 or padded > end:
        raise DecodeError(f"bad match length {length} at {offset}")
    pos, stop = offset + 4, offset + length
    while pos < stop:
        pos = _check_oxm(buf, pos, stop)
    return padded


def _entry_end(buf: bytes, offset: int, end: int, least: int, what: str) -> int:
    """Where the stats entry at ``offset`` ends, by its leading 16-bit length: at least
    ``least`` bytes, a multiple of 8, and within ``end``."""
    if offset + least > end:
        raise DecodeError(f"truncated {what} at {offset}")
    (length,) = _U16.unpack_from(buf, offset)
    if length < least or length & 7 or offset + length > end:
        raise DecodeError(f"bad {what} length {length} at {offset}")
    return offset + length


def _tlvs(buf: bytes, offset: int, end: int, what: str) -> Iterator[tuple[int, int, int, int]]:
    """``(type, length, start, end)`` of each action or instruction filling ``buf[offset:end]``
    exactly: each at least 8 bytes, a multiple of 8, and within ``end``."""
    while offset < end:
        if offset + 4 > end:
            raise DecodeError(f"truncated {what} at {offset}")
        kind, length = _ACTION_HDR.unpack_from(buf, offset)
        nxt = offset + length
        if length < _ACTION_SIZE or length & 7 or nxt > end:
            raise DecodeError(f"bad {what} length {length} at {offset}")
        yield kind, length, offset, nxt
        offset = nxt


def _check_actions(buf: bytes, offset: int, end: int, depth: int = 0) -> None:
    """Check that actions fill ``buf[offset:end]`` exactly, each of a type os-ken reads."""
    for kind, length, offset, nxt in _tlvs(buf, offset, end, "action"):
        if kind == _SET_FIELD:
            _check_oxm(buf, offset + 4, nxt)
            if buf[offset + 6] & 1:
                raise DecodeError(f"set_field with a mask at {offset}")
        elif kind == ofp.OFPAT_EXPERIMENTER:
            _check_experimenter_action(buf, offset, nxt, depth)
        else:
            size = _ACTION_SIZES.get(kind)
            if size is None:
                raise DecodeError(f"unknown action type {kind} at {offset}")
            if length != size:
                raise DecodeError(f"action type {kind} of length {length}, not {size}, at {offset}")


def _check_experimenter_action(buf: bytes, offset: int, end: int, depth: int) -> None:
    """An experimenter action: os-ken reads Nicira ones by subtype, and ct holds more actions."""
    (experimenter,) = _U32.unpack_from(buf, offset + 4)
    if experimenter != _NX_ID:
        return  # kept as raw bytes
    if end - offset < _NX_ACTION_SIZE:
        raise DecodeError(f"Nicira action of length {end - offset} at {offset}")
    if _U16.unpack_from(buf, offset + 8)[0] == nicira_ext.NXAST_CT:
        if end - offset < _NX_CT_SIZE:
            raise DecodeError(f"Nicira ct action of length {end - offset} at {offset}")
        if depth >= NESTING_LIMIT:
            raise DecodeError(f"actions nested more than {NESTING_LIMIT} deep at {offset}")
        _check_actions(buf, offset + _NX_CT_SIZE, end, depth + 1)


def _check_instructions(buf: bytes, offset: int, end: int) -> None:
    """Check that instructions fill ``buf[offset:end]`` exactly, each of a type os-ken reads."""
    for kind, length, offset, nxt in _tlvs(buf, offset, end, "instruction"):
        if kind in _ACTION_LISTS:
            _check_actions(buf, offset + 8, nxt)
        else:
            size = _INSTRUCTION_SIZES.get(kind)
            if size is None:  # os-ken has no class for it (experimenter instructions included)
                raise DecodeError(f"unknown instruction type {kind} at {offset}")
            if length != size:
                raise DecodeError(f"instruction type {kind} of length {length}, not {size}, at {offset}")


def _check_flow_entry(buf: bytes, offset: int, end: int) -> int:
    """Check the ``ofp_flow_stats`` at ``offset`` down to its last nested length; return its end."""
    entry_end = _entry_end(buf, offset, end, _FLOW_STATS_SIZE + 8, "flow stats entry")
    _check_instructions(buf, _check_match(buf, offset + _FLOW_STATS_SIZE, entry_end), entry_end)
    return entry_end


def _check_group_entry(buf: bytes, offset: int, end: int) -> int:
    """Check the ``ofp_group_desc`` at ``offset``, its buckets and their actions; return its end."""
    entry_end = _entry_end(buf, offset, end, ofp.OFP_GROUP_DESC_STATS_SIZE, "group desc entry")
    pos = offset + ofp.OFP_GROUP_DESC_STATS_SIZE
    while pos < entry_end:
        if pos + ofp.OFP_BUCKET_SIZE > entry_end:
            raise DecodeError(f"truncated bucket at {pos}")
        (size,) = _U16.unpack_from(buf, pos)
        if size < ofp.OFP_BUCKET_SIZE or size & 7 or pos + size > entry_end:
            raise DecodeError(f"bad bucket length {size} at {pos}")
        _check_actions(buf, pos + ofp.OFP_BUCKET_SIZE, pos + size)
        pos += size
    return entry_end


_ENTRY_CHECKS: dict[Any, Callable[[bytes, int, int], int]] = {
    parser.OFPFlowStats: _check_flow_entry,
    parser.OFPGroupDescStats: _check_group_entry,
}


def _via_os_ken(entry_cls: Any, convert: Callable[[Any], _T], buf: bytes, offset: int,
                end: int) -> tuple[_T, int]:
    """(``convert`` of os-ken's parse, end) of the entry at ``offset``, checked whole first.

    os-ken reads a copy of just the entry, so that nothing it does can reach past it.
    """
    entry_end = _ENTRY_CHECKS[entry_cls](buf, offset, end)
    try:
        return convert(entry_cls.parser(buf[offset:entry_end], 0)), entry_end
    except Exception as exc:  # noqa: BLE001 - os-ken raises struct.error, AssertionError, KeyError, its own...
        raise DecodeError(f"{entry_cls.__name__} at {offset}: {exc!r}") from exc


def _same(entry: Any) -> Any:
    return entry


# -- os-ken: leave the table dumps to us ------------------------------------------------------


class LazyBody(Sequence[Any]):
    """A multipart reply body os-ken parses only if somebody reads it.

    os-ken parses every entry of every reply into objects before any handler
    sees the message (about as slow as building them); routeflow decodes
    ``msg.buf`` itself, so the objects are made on demand for other readers.
    Each entry is checked whole before os-ken reads it: reading a malformed
    body raises :class:`DecodeError`.
    """

    def __init__(self, entry_cls: Any, buf: bytes, end: int) -> None:
        self._entry_cls, self._buf, self._end = entry_cls, buf, end
        self._items: list[Any] | None = None

    def _parsed(self) -> list[Any]:
        if self._items is None:
            items, offset = [], ofp.OFP_MULTIPART_REPLY_SIZE
            while offset < self._end:
                entry, offset = _via_os_ken(self._entry_cls, _same, self._buf, offset, self._end)
                items.append(entry)
            self._items = items
        return self._items

    def __getitem__(self, index: Any) -> Any:
        return self._parsed()[index]

    def __len__(self) -> int:
        return len(self._parsed())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._parsed())


_RAW_REPLIES = {
    ofp.OFPMP_FLOW: parser.OFPFlowStatsReply,
    ofp.OFPMP_GROUP_DESC: parser.OFPGroupDescStatsReply,
}


def install_raw_stats_replies() -> None:
    """Make os-ken hand over flow-stats and group-desc replies unparsed (:class:`LazyBody`).

    Process-wide (os-ken's parser table is), idempotent, and transparent to
    anybody reading ``msg.body``.
    """
    table = parser._MSG_PARSERS
    original = table[ofp.OFPT_MULTIPART_REPLY]
    if getattr(original, "routeflow_raw", False):
        return

    def multipart_reply(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int,
                        buf: bytes) -> Any:
        if msg_len >= ofp.OFP_MULTIPART_REPLY_SIZE and len(buf) >= msg_len:
            kind, flags = _MP_REPLY.unpack_from(buf, ofp.OFP_HEADER_SIZE)
            cls = _RAW_REPLIES.get(kind)
            if cls is not None:
                msg = cls(datapath)
                msg.set_headers(version, msg_type, msg_len, xid)
                msg.set_buf(buf)
                msg.type, msg.flags = kind, flags
                msg.body = LazyBody(cls.cls_stats_body_cls, msg.buf, msg_len)
                return msg
        return original(datapath, version, msg_type, msg_len, xid, buf)

    multipart_reply.routeflow_raw = True  # type: ignore[attr-defined]
    multipart_reply.original = original  # type: ignore[attr-defined]
    table[ofp.OFPT_MULTIPART_REPLY] = multipart_reply


# -- os-ken: parse only what it can parse in bounded time ---------------------------------------
#
# os-ken parses every message a switch sends in that switch's receive loop, before any
# handler runs, by the version in the message's own header, and most of its parsers trust
# the lengths they read. A truncated match raises an exception that ends the receive loop
# (and drops the switch); a zero-length element, property or entry loops forever.

#: What a switch may send in any version: the version is agreed through hellos, and errors
#: and echoes may come before (the types are numbered alike in every version).
_ANY_VERSION = frozenset({ofp.OFPT_HELLO, ofp.OFPT_ERROR, ofp.OFPT_ECHO_REQUEST, ofp.OFPT_ECHO_REPLY})
#: Messages nobody here reads whose os-ken parsers walk nested lengths unchecked.
_UNREAD = frozenset({ofp.OFPT_EXPERIMENTER, ofp.OFPT_QUEUE_GET_CONFIG_REPLY})
#: Multipart replies os-ken may parse: the raw ones, and those it reads at fixed sizes. The
#: others (group and meter statistics, meter configuration, table features, experimenter)
#: nest lengths os-ken trusts, and routeflow never asks for them.
_PARSED_REPLIES = frozenset(_RAW_REPLIES) | {
    ofp.OFPMP_DESC, ofp.OFPMP_AGGREGATE, ofp.OFPMP_TABLE, ofp.OFPMP_PORT_STATS, ofp.OFPMP_QUEUE,
    ofp.OFPMP_GROUP_FEATURES, ofp.OFPMP_METER_FEATURES, ofp.OFPMP_PORT_DESC,
}
_HELLO_ELEM = struct.Struct("!HH")


def _hello_walks(buf: bytes, msg_len: int) -> bool:
    """Whether os-ken's walk of the hello elements (by length, ignoring padding) ends in the message."""
    offset = ofp.OFP_HEADER_SIZE
    while offset < msg_len:
        if offset + _HELLO_ELEM.size > msg_len:
            return False
        _, length = _HELLO_ELEM.unpack_from(buf, offset)
        if length < _HELLO_ELEM.size or offset + length > msg_len:
            return False
        offset += length
    return True


def _refusal(version: int, msg_type: int, msg_len: int, buf: bytes) -> str | None:
    """Why os-ken must not parse this message (``buf[:msg_len]``) at all, or None if it may."""
    if version != VERSION and msg_type not in _ANY_VERSION:
        return f"a version {version} message to a version {VERSION} controller"
    if msg_type in _UNREAD:
        return "unread message type"
    if msg_type == ofp.OFPT_MULTIPART_REPLY and msg_len >= ofp.OFP_MULTIPART_REPLY_SIZE:
        (kind,) = _U16.unpack_from(buf, ofp.OFP_HEADER_SIZE)
        if kind not in _PARSED_REPLIES:
            return f"unread multipart reply type {kind}"
    if msg_type == ofp.OFPT_FLOW_MOD and msg_len >= ofp.OFP_FLOW_MOD_SIZE:  # nonsense from a switch, but parsed
        try:
            _check_instructions(buf, _check_match(buf, ofp.OFP_FLOW_MOD_SIZE - ofp.OFP_MATCH_SIZE, msg_len),
                                msg_len)
        except DecodeError as exc:
            return str(exc)
    return None


def install_parser_guards() -> None:
    """Keep os-ken's parsers to messages they read in bounded time, and a bad one from costing the switch.

    Wraps os-ken's parser of every OpenFlow version (process-wide, idempotently):
    a message :func:`_refusal` names a reason for is dropped unparsed; a hello whose
    elements os-ken cannot walk is read by its header alone (the version negotiation
    of OpenFlow before 1.3.1); a message os-ken fails to parse is dropped. A message
    of a version os-ken has no parser for is dropped too, by a wrapper of
    ``ofproto_parser.msg`` itself (which would raise ``OFPUnknownVersion``). Each is
    logged with its reason; the switch stays connected.
    """
    table = ofproto_parser._MSG_PARSERS
    for version, original in list(table.items()):
        if not getattr(original, "routeflow_guarded", False):
            table[version] = _guarded(original)
    if not getattr(ofproto_parser.msg, "routeflow_guarded", False):
        # The receive loop looks it up in the module on every message, so replacing it there suffices.
        ofproto_parser.msg = _known_versions_only(ofproto_parser.msg)


def _dropped(datapath: Any, msg_type: int, msg_len: int, xid: int, reason: str) -> None:
    LOG.warning("switch %s: OpenFlow message type %d (xid %d, %d bytes) dropped: %s",
                getattr(datapath, "address", "?"), msg_type, xid, msg_len, reason)


def _known_versions_only(original: Callable[..., Any]) -> Callable[..., Any]:
    def msg(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: bytes) -> Any:
        if version not in ofproto_parser._MSG_PARSERS:
            _dropped(datapath, msg_type, msg_len, xid, f"no parser for OpenFlow version {version}")
            return None
        return original(datapath, version, msg_type, msg_len, xid, buf)

    msg.routeflow_guarded = True  # type: ignore[attr-defined]
    msg.original = original  # type: ignore[attr-defined]
    return msg


def _guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    def parse(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: bytes) -> Any:
        end = min(msg_len, len(buf))  # os-ken itself fails the message if the buffer is short
        reason = _refusal(version, msg_type, end, buf)
        if reason is None:
            if msg_type == ofp.OFPT_HELLO and not _hello_walks(buf, end):
                LOG.warning("switch %s: hello elements unreadable, reading its header only",
                            getattr(datapath, "address", "?"))
                msg_len, buf = ofp.OFP_HEADER_SIZE, buf[:ofp.OFP_HEADER_SIZE]
            try:
                return original(datapath, version, msg_type, msg_len, xid, buf)
            except Exception as exc:  # noqa: BLE001 - os-ken raises anything, and a truncated match ends the loop
                reason = f"unreadable: {exc!r}"
        _dropped(datapath, msg_type, msg_len, xid, reason)
        return None

    parse.routeflow_guarded = True  # type: ignore[attr-defined]
    parse.original = original  # type: ignore[attr-defined]
    return parse
