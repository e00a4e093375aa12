"""Targets ``openflow_replies`` and ``openflow_messages``.

``openflow_replies``: bytes -> ``fast_decode.decode_flow_stats`` / ``decode_group_desc`` /
``reply_body_span``: values or ``DecodeError``, no more values than the bytes allow.

``openflow_messages``: a switch's message -> os-ken's parser behind
``guards.install_parser_guards`` (and ``install_raw_stats_replies``): a message or None, never
an exception; a lazy multipart body reads or raises ``DecodeError``."""

from __future__ import annotations

import functools
import struct

from hypothesis import strategies as st
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from fuzz import seeds
from fuzz.engine import Target
from fuzz.strategies import LengthField, mutated
from fuzz.targets.common import show_bytes, stage
from routeflow.controller.classify import traffic_kind
from routeflow.controller.openflow import fast_decode, guards
from routeflow.controller.openflow.errors import DecodeError
from routeflow.model import Flow

# -- openflow_replies --------------------------------------------------------------------------


def of_length_fields(buf: bytes) -> list[LengthField]:
    """Length fields of a flow-stats or group-desc reply (every nesting level), from the spec."""
    fields: list[LengthField] = [(2, 2, "big")]
    if len(buf) < 16:
        return fields
    (kind,) = struct.unpack_from("!H", buf, 8)

    def actions(pos: int, end: int, depth: int = 0) -> None:
        while pos + 4 <= end and depth < 4:
            action_type, length = struct.unpack_from("!HH", buf, pos)
            fields.append((pos + 2, 2, "big"))
            if action_type == ofp.OFPAT_SET_FIELD:
                fields.append((pos + 7, 1, "big"))
            elif action_type == ofp.OFPAT_EXPERIMENTER and pos + 10 <= end and struct.unpack_from(
                    "!IH", buf, pos + 4) == (0x2320, 35):
                actions(pos + 24, pos + length, depth + 1)
            if length < 8:
                return
            pos += length

    offset = 16
    while offset + 8 <= len(buf):
        (length,) = struct.unpack_from("!H", buf, offset)
        fields.append((offset, 2, "big"))
        end = min(offset + length, len(buf))
        if kind == ofp.OFPMP_FLOW and offset + 52 <= len(buf):
            match = offset + 48
            (match_len,) = struct.unpack_from("!H", buf, match + 2)
            fields.append((match + 2, 2, "big"))
            pos = match + 4
            while pos + 4 <= min(match + match_len, end):
                fields.append((pos + 3, 1, "big"))
                pos += 4 + buf[pos + 3]
            pos = match + (match_len + 7) // 8 * 8
            while pos + 4 <= end:
                inst_type, inst_len = struct.unpack_from("!HH", buf, pos)
                fields.append((pos + 2, 2, "big"))
                if inst_type in (ofp.OFPIT_WRITE_ACTIONS, ofp.OFPIT_APPLY_ACTIONS):
                    actions(pos + 8, min(pos + inst_len, end))
                if inst_len < 8:
                    break
                pos += inst_len
        elif kind == ofp.OFPMP_GROUP_DESC:
            pos = offset + 8
            while pos + 16 <= end:
                (bucket_len,) = struct.unpack_from("!H", buf, pos)
                fields.append((pos, 2, "big"))
                actions(pos + 16, min(pos + bucket_len, end))
                if bucket_len < 16:
                    break
                pos += bucket_len
        if length < 8:
            break
        offset += length
    return fields


def check_openflow_replies(buf: bytes) -> None:
    try:
        _, end = stage("reply_body_span", lambda: fast_decode.reply_body_span(buf))
    except DecodeError:
        end = None
    body = max(len(buf) - 16, 0)
    for stop in {None, end}:
        try:
            flows = stage("decode_flow_stats", lambda: fast_decode.decode_flow_stats(buf, end=stop))
            assert len(flows) <= body // 56 and all(isinstance(f, Flow) for f in flows), flows
        except DecodeError:
            pass
        try:
            groups = stage("decode_group_desc", lambda: fast_decode.decode_group_desc(buf, end=stop))
            assert len(groups) <= body // 8, groups
            assert sum(len(a) for g in groups for a in g.buckets) <= body // 8, groups
        except DecodeError:
            pass


def openflow_replies() -> Target:
    small = seeds.of_small_replies()
    return Target(
        name="openflow_replies",
        doc="fast_decode.decode_flow_stats / decode_group_desc / reply_body_span on switch replies",
        strategy=st.one_of(
            mutated(small, fields=of_length_fields, orders=("big",)),
            mutated(small, fields=of_length_fields, orders=("big",)),
            mutated(small, fields=of_length_fields, orders=("big",), max_ops=8),
            st.sampled_from(small),
            st.binary(max_size=128).map(lambda b: seeds.MP_HEADER.pack(4, 19, 16 + len(b), 1, 1, 0) + b),
            st.binary(max_size=128),
        ),
        check=check_openflow_replies,
        seeds=lambda: seeds.of_golden_replies() + small,
        show=show_bytes,
    )

# -- openflow_messages -------------------------------------------------------------------------


class FuzzDatapath:
    """What os-ken's parsers read of a datapath."""

    ofproto = ofp
    ofproto_parser = parser
    id = 1
    address = ("fuzz", 0)


_DATAPATH = FuzzDatapath()


@functools.cache
def _install_guards() -> None:
    guards.install_raw_stats_replies()
    guards.install_parser_guards()


def check_openflow_messages(data: bytes) -> None:
    _install_guards()
    if len(data) < ofp.OFP_HEADER_SIZE:
        return  # os-ken waits for the rest of the header
    version, msg_type, msg_len, xid = struct.unpack_from("!BBHI", data)
    if msg_len < ofp.OFP_HEADER_SIZE:
        return  # os-ken closes the switch
    buf = data[:msg_len] + bytes(max(msg_len - len(data), 0))  # os-ken reads exactly msg_len bytes
    msg = stage("ofproto_parser.msg (guarded)",
                lambda: ofproto_parser.msg(_DATAPATH, version, msg_type, msg_len, xid, buf))
    if msg is None:
        return
    body = getattr(msg, "body", None)
    if isinstance(body, guards.LazyBody):
        try:
            stage("LazyBody", lambda: len(body))
        except DecodeError:
            pass
        try:
            if msg.type == ofp.OFPMP_FLOW:
                stage("decode_flow_stats", lambda: fast_decode.decode_flow_stats(msg.buf, end=msg.msg_len))
            else:
                stage("decode_group_desc", lambda: fast_decode.decode_group_desc(msg.buf, end=msg.msg_len))
        except DecodeError:
            pass
    if msg_type == ofp.OFPT_PACKET_IN:
        stage("traffic_kind", lambda: traffic_kind(bytes(msg.data)))


def _of_header_fields(buf: bytes) -> list[LengthField]:
    return [(2, 2, "big"), (1, 1, "big"), (0, 1, "big"), *of_length_fields(buf)]


def openflow_messages() -> Target:
    messages = seeds.of_messages()
    return Target(
        name="openflow_messages",
        doc="os-ken's parsing of a switch's messages behind the parser guards of routeflow.controller.openflow.guards",
        strategy=st.one_of(
            mutated(messages, fields=_of_header_fields, orders=("big",)),
            mutated(messages, fields=_of_header_fields, orders=("big",)),
            st.tuples(st.integers(0, 255), st.integers(0, 40), st.binary(max_size=96)).map(
                lambda v: struct.pack("!BBHI", 4 if v[0] % 2 else v[0], v[1], 8 + len(v[2]), 1) + v[2]),
        ),
        check=check_openflow_messages,
        seeds=lambda: list(messages) + seeds.of_golden_replies(),
        show=show_bytes,
    )
