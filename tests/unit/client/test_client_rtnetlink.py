"""The fast route decoder agrees with the pyroute2-based one on real kernel messages."""

from __future__ import annotations

import struct
from typing import Any

from routeflow.client import rtnetlink
from routeflow.client.fib import parse_route

RTM_NEWROUTE, RTM_DELROUTE = 24, 25


def _all_hex(golden_dump: dict[str, Any], golden_events: dict[str, Any]) -> list[str]:
    hexes = list(golden_dump["messages"])
    for step in golden_events["steps"]:
        hexes += step["messages"] + step.get("route_dump", [])
    return hexes


def test_every_captured_route_message_decodes_like_pyroute2(golden_dump, golden_events):
    from tests.unit.client.support import parse_hex

    checked = 0
    for text in _all_hex(golden_dump, golden_events):
        data = bytes.fromhex(text)
        ours = [(kind, rtnetlink.route(data, a, b)) for kind, _, a, b in rtnetlink.messages(data)
                if kind in (RTM_NEWROUTE, RTM_DELROUTE)]
        theirs = [parse_route(m) for m in parse_hex([text]) if m["header"]["type"] in (RTM_NEWROUTE, RTM_DELROUTE)]
        assert len(ours) == len(theirs)
        for (_, mine), reference in zip(ours, theirs):
            if mine is not rtnetlink.UNHANDLED:
                assert mine == reference
                checked += 1
    assert checked >= 10


def test_truncated_and_foreign_messages():
    header = struct.pack("=IHHII", 16 + 4, RTM_NEWROUTE, 0, 0, 0)
    assert rtnetlink.route(header + b"\0" * 4, 0, 20) is rtnetlink.UNHANDLED
    assert list(rtnetlink.messages(struct.pack("=IHHII", 99, 24, 0, 0, 0))) == []
    ipv6 = struct.pack("=IHHII", 28, RTM_NEWROUTE, 0, 0, 0) + struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 254, 4, 0, 1, 0)
    assert rtnetlink.route(ipv6, 0, 28) is None
