"""Checking a whole table-dump entry from a switch before os-ken reads it.

os-ken's parsers trust every length they read: a zero-length bucket, instruction or
action makes them loop forever, appending; a length past the entry makes them read the
next one. The fast decoder refuses (Unsupported) everything but what routeflow
writes, and whatever it refuses is checked here, whole and down to the last nested
length, before os-ken sees it. Checked means: every structure at least its header, a
multiple of 8 where OpenFlow pads to 8, within its enclosing structure, and of the size
os-ken will step over, so that os-ken's loops advance exactly as these do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from os_ken.ofproto import nicira_ext, ofproto_common
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.openflow import structs
from routeflow.controller.openflow.errors import DecodeError
from routeflow.controller.openflow.structs import FLOW_STATS_SIZE

# Assigned, not imported: CPython 3.11 compiles a method call on an imported name (which
# it takes for a module) to a slower attribute load, and entry_end runs for every entry.
_ACTION_HDR = structs.ACTION_HDR
_MATCH_HDR = structs.MATCH_HDR
_OXM_HDR = structs.OXM_HDR
_U16 = structs.U16
_U32 = structs.U32

_T = TypeVar("_T")
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


def check_oxm(buf: bytes, offset: int, end: int) -> int:
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


def check_match(buf: bytes, offset: int, end: int) -> int:
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
        pos = check_oxm(buf, pos, stop)
    return padded


def entry_end(buf: bytes, offset: int, end: int, least: int, what: str) -> int:
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
        if kind == ofp.OFPAT_SET_FIELD:
            check_oxm(buf, offset + 4, nxt)
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


def check_instructions(buf: bytes, offset: int, end: int) -> None:
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


def check_flow_entry(buf: bytes, offset: int, end: int) -> int:
    """Check the ``ofp_flow_stats`` at ``offset`` down to its last nested length; return its end."""
    stop = entry_end(buf, offset, end, FLOW_STATS_SIZE + 8, "flow stats entry")
    check_instructions(buf, check_match(buf, offset + FLOW_STATS_SIZE, stop), stop)
    return stop


def check_group_entry(buf: bytes, offset: int, end: int) -> int:
    """Check the ``ofp_group_desc`` at ``offset``, its buckets and their actions; return its end."""
    stop = entry_end(buf, offset, end, ofp.OFP_GROUP_DESC_STATS_SIZE, "group desc entry")
    pos = offset + ofp.OFP_GROUP_DESC_STATS_SIZE
    while pos < stop:
        if pos + ofp.OFP_BUCKET_SIZE > stop:
            raise DecodeError(f"truncated bucket at {pos}")
        (size,) = _U16.unpack_from(buf, pos)
        if size < ofp.OFP_BUCKET_SIZE or size & 7 or pos + size > stop:
            raise DecodeError(f"bad bucket length {size} at {pos}")
        _check_actions(buf, pos + ofp.OFP_BUCKET_SIZE, pos + size)
        pos += size
    return stop


_ENTRY_CHECKS: dict[Any, Callable[[bytes, int, int], int]] = {
    parser.OFPFlowStats: check_flow_entry,
    parser.OFPGroupDescStats: check_group_entry,
}


def parse_checked(entry_cls: Any, convert: Callable[[Any], _T], buf: bytes, offset: int,
                  end: int) -> tuple[_T, int]:
    """(``convert`` of os-ken's parse, end) of the entry at ``offset``, checked whole first.

    os-ken reads a copy of just the entry, so that nothing it does can reach past it.
    """
    stop = _ENTRY_CHECKS[entry_cls](buf, offset, end)
    try:
        return convert(entry_cls.parser(buf[offset:stop], 0)), stop
    except Exception as exc:  # noqa: BLE001 - os-ken raises struct.error, AssertionError, KeyError, its own...
        raise DecodeError(f"{entry_cls.__name__} at {offset}: {exc!r}") from exc
