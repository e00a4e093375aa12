"""The fast decoder: the bodies of ``OFPMP_FLOW`` and ``OFPMP_GROUP_DESC`` replies straight to flows and groups.

Reads the raw bytes of a table dump for the shapes routeflow writes (and those
close to them), and hands each entry it refuses (:class:`Unsupported`) to os-ken
and the reference codec, so that it decodes to the very :class:`Flow` and
:class:`Group` values ``reference.flow_from_stats``/``group_from_stats`` give
(the unit tests prove it). Decoded pieces that repeat (the actions of one
instruction block, of one bucket, a match field) are memoised in bounded memos.

What a switch sends is untrusted. The decoders are total: they return values or
raise :class:`DecodeError`, in time and memory proportional to the reply, and an
entry reaches os-ken's parsers (which trust every length they read) only once
:mod:`.checks` has checked every nested length in it.
"""

from __future__ import annotations

import operator

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.openflow import fields, reference, structs
from routeflow.controller.openflow.checks import entry_end, parse_checked
from routeflow.controller.openflow.errors import STATS, DecodeError, Unsupported
from routeflow.controller.openflow.fields import (
    BY_NAME,
    PREFIX_SUFFIX,
    ROUTE_MATCH_HEAD,
    ROUTE_MATCH_LEN,
    V4_MASKS,
    decode_tlv,
    inet_ntoa,
)
from routeflow.controller.openflow.memo import BytesMemo, remember
from routeflow.controller.openflow.structs import FLOW_STATS, FLOW_STATS_SIZE
from routeflow.model import Action, Flow, Group, Match

# Assigned, not imported: CPython 3.11 compiles a method call on an imported name (which
# it takes for a module) to a slower attribute load, a cost on every entry.
_ACTION_HDR = structs.ACTION_HDR
_GROUP_DESC = structs.GROUP_DESC
_HEADER = structs.HEADER
_MP_REPLY = structs.MP_REPLY
_U16 = structs.U16
_U32 = structs.U32
_V4_PREFIX_BY_MASK = fields.V4_PREFIX_BY_MASK

_OUTPUT, _GROUP, _DEC_TTL, _SET_FIELD = (ofp.OFPAT_OUTPUT, ofp.OFPAT_GROUP, ofp.OFPAT_DEC_NW_TTL,
                                         ofp.OFPAT_SET_FIELD)
_PUSH_VLAN, _POP_VLAN = ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_POP_VLAN
_CONTROLLER_PORT = ofp.OFPP_CONTROLLER
_GROUP_TYPE_NAMES = {number: name for name, number in reference.GROUP_TYPES.items()}
_ETH_TYPE_IPV4 = ("eth_type", 0x0800)

# -- match ------------------------------------------------------------------------------

_tlv_cache: dict[bytes, tuple[str, str | int]] = {}
_name_of = operator.itemgetter(0)
#: The headers of the IPv4 address fields, exact and masked: (name, masked)
_V4_HEADERS = {BY_NAME[name].exact: (name, False) for name in ("ipv4_src", "ipv4_dst")}
_V4_HEADERS.update({BY_NAME[name].masked: (name, True) for name in ("ipv4_src", "ipv4_dst")})


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
                    item = (name, inet_ntoa(value))
                else:
                    mask = raw[8:12]
                    prefixlen = _V4_PREFIX_BY_MASK.get(mask)
                    if prefixlen is None:
                        item = (name, f"{inet_ntoa(value)}/{inet_ntoa(mask)}")
                    elif prefixlen == 32:
                        item = (name, inet_ntoa(value))
                    else:
                        number = int.from_bytes(value, "big")
                        net = number & V4_MASKS[prefixlen]
                        if net != number:
                            value = _U32.pack(net)
                        item = (name, inet_ntoa(value) + PREFIX_SUFFIX[prefixlen])
            else:
                field, decoded, _ = decode_tlv(buf, offset, end)
                item = (field.name, decoded)
                if field.codec.memoise:
                    remember(cache, raw, item)
        fields.append(item)
        offset = nxt
    if len(fields) > 1:
        fields.sort(key=_name_of)
        for i in range(1, len(fields)):
            if fields[i][0] == fields[i - 1][0]:
                raise Unsupported("repeated match field")
    return tuple(fields)


# -- actions and instructions -----------------------------------------------------------


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
            field, value, _ = decode_tlv(buf, offset + 4, tlv_end)
            actions.append(("set_field", field.name, value))
        else:
            raise Unsupported(f"action type {kind}")
        offset += length
    return actions


_inst_cache: BytesMemo[tuple[tuple[Action, ...], int | None]] = BytesMemo()


def decode_instructions(buf: bytes, offset: int, end: int) -> tuple[tuple[Action, ...], int | None]:
    """(actions, goto) of an instruction list, as ``reference.flow_from_stats`` reads it."""
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
    return _inst_cache.remember(raw, (tuple(actions), goto))


# -- replies ----------------------------------------------------------------------------


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
    unpack = FLOW_STATS.unpack_from
    inst_cache = _inst_cache
    while offset < end:
        if offset + FLOW_STATS_SIZE + 8 > end:
            raise DecodeError(f"truncated flow stats entry at {offset}")
        length, table, priority, match_type, match_len = unpack(buf, offset)
        stop = offset + length
        if length < FLOW_STATS_SIZE + 8 or length & 7 or stop > end:
            raise DecodeError(f"bad flow stats entry length {length} at {offset}")
        match_start = offset + FLOW_STATS_SIZE
        inst_start = match_start + ((match_len + 7) & ~7)
        try:
            if match_type != ofp.OFPMT_OXM or match_len < 4 or inst_start > stop:
                raise Unsupported("match")
            match: Match | None = None
            if (match_len == ROUTE_MATCH_LEN
                    and buf[match_start + 4:match_start + 14] == ROUTE_MATCH_HEAD):  # a route: inline
                value = buf[match_start + 14:match_start + 18]
                prefixlen = _V4_PREFIX_BY_MASK.get(buf[match_start + 18:match_start + 22])
                if (prefixlen is not None and prefixlen < 32
                        and not int.from_bytes(value, "big") & ~V4_MASKS[prefixlen] & 0xFFFFFFFF):
                    match = (_ETH_TYPE_IPV4, ("ipv4_dst", inet_ntoa(value) + PREFIX_SUFFIX[prefixlen]))
            if match is None:
                match = decode_match(buf, match_start + 4, match_start + match_len) if match_len > 4 else ()
            instructions = inst_cache.get(buf[inst_start:stop])
            if instructions is None:
                instructions = decode_instructions(buf, inst_start, stop)
            append(Flow(table, priority, match, *instructions))
        except Unsupported:
            STATS.fallback += 1
            append(parse_checked(parser.OFPFlowStats, reference.flow_from_stats, buf, offset, stop)[0])
        offset = stop
    return flows


_bucket_cache: BytesMemo[tuple[Action, ...]] = BytesMemo()


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
            actions = _bucket_cache.remember(raw, tuple(decode_actions(raw, 0, len(raw))))
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
        stop = entry_end(buf, offset, end, ofp.OFP_GROUP_DESC_STATS_SIZE, "group desc entry")
        try:
            groups.append(_group_entry(buf, offset, stop))
        except Unsupported:
            STATS.fallback += 1
            groups.append(parse_checked(parser.OFPGroupDescStats, reference.group_from_stats, buf, offset,
                                        stop)[0])
        offset = stop
    return groups


def reply_body_span(buf: bytes) -> tuple[int, int]:
    """(multipart type, end of the message) of a raw multipart reply."""
    if len(buf) < ofp.OFP_MULTIPART_REPLY_SIZE:
        raise DecodeError(f"multipart reply of {len(buf)} bytes")
    _, _, length, _ = _HEADER.unpack_from(buf)
    (kind, _) = _MP_REPLY.unpack_from(buf, ofp.OFP_HEADER_SIZE)
    return kind, min(length, len(buf))
