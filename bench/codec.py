#!/usr/bin/env python3
"""OpenFlow codec micro-benchmark: os-ken objects vs routeflow's hand-written wire codec.

    .venv/bin/python bench/codec.py                  # 100k flows
    .venv/bin/python bench/codec.py --flows 20000 --os-ken-flows 5000

Builds a FIB-table-like TableMod (every route a prefix in table 1: most with
one of 64 next hops, one in ten via one of 32 ECMP select groups, a few
blackholes and to-the-controller routes), then times, in this process, with
no switch:

- encode: the TableMod -> wire bytes with xids (os-ken: ``reference.encode_table_mod``
  plus ``set_xid``/``serialize`` as the controller used to; fast: ``fast_encode.encode_table_mod``);
- delete: the same for a TableMod deleting every flow;
- decode: flow-stats replies of those flows, cut like Open vSwitch cuts them
  (about 64 KiB each), -> ``Flow`` (os-ken: its parser plus ``reference.flow_from_stats``;
  fast: ``fast_decode.decode_flow_stats``);
- group decode: a group-desc reply of the groups.

Both paths must produce identical bytes and values (checked on what os-ken did).
The os-ken path can run on a sample (``--os-ken-flows``) to save time; rates are per
entry of CPU time (``time.process_time``: the machine is shared), best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.openflow import reference
from routeflow.controller.openflow.errors import STATS
from routeflow.controller.openflow.fast_decode import decode_flow_stats, decode_group_desc, reply_body_span
from routeflow.controller.openflow.fast_encode import encode_table_mod
from routeflow.model import CONTROLLER, DEC_TTL, Flow, Group, group, match, output, set_field
from routeflow.protocol.messages import TableMod

REPLY_BYTES = 65535  # OVS fills multipart replies up to the 16-bit message length


def next_hop(n: int) -> tuple[Any, ...]:
    return (set_field("eth_src", f"02:00:00:00:00:{n % 8:02x}"),
            set_field("eth_dst", f"0a:00:00:00:{n >> 8:02x}:{n & 255:02x}"), output(n % 8 + 1))


def table(flows: int) -> tuple[list[Flow], list[Group]]:
    groups = [Group(1000 + g, "select", (next_hop(g), next_hop(g + 1), next_hop(g + 2))) for g in range(32)]
    out = []
    for i in range(flows):
        prefix = f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"
        m = match(eth_type=0x800, ipv4_dst=prefix)
        if i % 100 == 99:
            out.append(Flow(1, 1024, m))  # blackhole
        elif i % 100 == 98:
            out.append(Flow(1, 1024, m, (CONTROLLER,)))
        elif i % 10 == 0:
            out.append(Flow(1, 1024, m, (DEC_TTL, group(groups[i % 32].group_id))))
        else:
            out.append(Flow(1, 1024, m, (DEC_TTL, *next_hop(i % 64))))
    return out, groups


def os_ken_encode(mod: TableMod) -> bytes:
    messages, errors = reference.encode_table_mod(mod)
    assert not errors
    xids = itertools.count(1)
    out = bytearray()
    for msg in messages:
        msg.set_xid(next(xids))
        msg.serialize()
        out += msg.buf
    return bytes(out)


def fast_encode(mod: TableMod) -> bytes:
    chunks, _, errors = encode_table_mod(mod, itertools.count(1).__next__)
    assert not errors
    return b"".join(chunks)


def stats_replies(wire: bytes) -> list[bytes]:
    """Flow-stats replies holding the flows of the flow mods in ``wire``."""
    entries = []
    offset = 0
    while offset < len(wire):
        _, kind, length, _ = struct.unpack_from("!BBHI", wire, offset)
        if kind == ofp.OFPT_FLOW_MOD:
            table_id, priority = wire[offset + 24], struct.unpack_from("!H", wire, offset + 30)[0]
            rest = wire[offset + 48:offset + length]
            entries.append(struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, 48 + len(rest), table_id, 100, 0, priority,
                                       0, 0, 0, reference.ROUTEFLOW_COOKIE, 12345, 1234567) + rest)
        offset += length
    return pack_replies(ofp.OFPMP_FLOW, entries)


def group_replies(groups: list[Group]) -> list[bytes]:
    entries = []
    for grp in groups:
        mod = reference.group_add(grp)
        mod.set_xid(0)
        mod.serialize()
        body = bytes(mod.buf[16:])
        entries.append(struct.pack("!HBxI", 8 + len(body), mod.type, grp.group_id) + body)
    return pack_replies(ofp.OFPMP_GROUP_DESC, entries)


def pack_replies(kind: int, entries: list[bytes]) -> list[bytes]:
    replies, body = [], b""
    for entry in entries + [b""]:
        if body and (not entry or 16 + len(body) + len(entry) > REPLY_BYTES):
            more = ofp.OFPMPF_REPLY_MORE if entry else 0
            replies.append(struct.pack("!BBHIHH4x", 4, ofp.OFPT_MULTIPART_REPLY, 16 + len(body), 7, kind, more) + body)
            body = b""
        body += entry
    return replies


_OS_KEN_MULTIPART = getattr(parser._MSG_PARSERS[ofp.OFPT_MULTIPART_REPLY], "original",
                            parser._MSG_PARSERS[ofp.OFPT_MULTIPART_REPLY])


def os_ken_decode(replies: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for buf in replies:
        msg = _OS_KEN_MULTIPART(reference.STANDALONE, 4, ofp.OFPT_MULTIPART_REPLY, len(buf), 7, buf)
        if msg.type == ofp.OFPMP_FLOW:
            out += [reference.flow_from_stats(s) for s in msg.body]
        else:
            out += [reference.group_from_stats(s) for s in msg.body]
    return out


def fast_decode(replies: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for buf in replies:
        kind, end = reply_body_span(buf)
        out += (decode_flow_stats if kind == ofp.OFPMP_FLOW else decode_group_desc)(buf, end=end)
    return out


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--os-ken-flows", type=int, default=0, help="os-ken path on this many (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="fast path: best of this many runs")
    args = ap.parse_args(argv)
    flows, groups = table(args.flows)
    sample = flows[:args.os_ken_flows or args.flows]

    rows = []

    def row(name: str, count: int, os_ken: Callable[[], Any], fast: Callable[[], Any], os_ken_count: int,
            check: Callable[[Any, Any], bool]) -> None:
        slow_s, slow_out = timed(os_ken, 1)
        fast_s, fast_out = timed(fast, args.repeat)
        assert check(slow_out, fast_out), f"{name}: fast path differs from os-ken"
        slow_rate, fast_rate = os_ken_count / slow_s, count / fast_s
        rows.append((name, count, slow_rate, fast_rate, fast_rate / slow_rate, 1e6 / fast_rate))
        print(f"  {name}: done", file=sys.stderr)

    add = TableMod(1, add=tuple(flows), group_add=tuple(groups))
    add_sample = TableMod(1, add=tuple(sample), group_add=tuple(groups))
    wire = fast_encode(add)
    row("encode flow add", len(flows), lambda: os_ken_encode(add_sample), lambda: fast_encode(add), len(sample),
        lambda slow, fast: fast.startswith(slow[:-8]))
    delete = TableMod(1, delete=tuple(f.key for f in flows))
    delete_sample = TableMod(1, delete=tuple(f.key for f in sample))
    row("encode flow delete", len(flows), lambda: os_ken_encode(delete_sample), lambda: fast_encode(delete),
        len(sample), lambda slow, fast: fast.startswith(slow[:-8]))
    replies = stats_replies(wire)
    sample_replies = stats_replies(os_ken_encode(add_sample))
    row("decode flow stats", len(flows), lambda: os_ken_decode(sample_replies), lambda: fast_decode(replies),
        len(sample), lambda slow, fast: fast[:len(slow)] == slow and len(fast) == len(flows))
    many = [Group(g, "select", (next_hop(g), next_hop(g + 1))) for g in range(10_000)]
    greplies = group_replies(many)
    row("decode group desc", len(many), lambda: os_ken_decode(greplies), lambda: fast_decode(greplies), len(many),
        lambda slow, fast: slow == fast == many)

    print(f"\nOpenFlow codec, {args.flows} route flows ({len(wire) / len(flows):.0f} wire bytes each), "
          f"{len(replies)} flow-stats replies; rates in entries per CPU second")
    print(f"{'operation':<20} {'entries':>8} {'os-ken/s':>10} {'fast/s':>10} {'ratio':>7} {'1M fast':>8}")
    for name, count, slow_rate, fast_rate, ratio, secs in rows:
        print(f"{name:<20} {count:>8} {slow_rate:>10.0f} {fast_rate:>10.0f} {ratio:>6.1f}x {secs:>7.1f}s")
    print(f"fast-path fallbacks to os-ken: {STATS.fallback}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
