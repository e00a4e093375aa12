"""The fast route decoder agrees with the pyroute2-based one on real kernel messages."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from routeflow.client import rtnetlink
from routeflow.client.fib import KernelNextHop, KernelRoute, parse_route

from .support import raw

RTM_NEWROUTE, RTM_DELROUTE = 24, 25


def _all_hex(golden: tuple[dict[str, Any], dict[str, Any]]) -> list[str]:
    golden_dump, golden_events = golden
    hexes = list(golden_dump["messages"])
    for step in golden_events["steps"]:
        hexes += step["messages"] + step.get("route_dump", [])
    return hexes


def test_every_captured_route_message_decodes_like_pyroute2(golden):
    from tests.unit.client.support import parse_hex

    checked = unhandled = 0
    for text in _all_hex(golden):
        data = bytes.fromhex(text)
        ours = [(kind, rtnetlink.route(data, a, b)) for kind, _, a, b in rtnetlink.messages(data)
                if kind in (RTM_NEWROUTE, RTM_DELROUTE)]
        theirs = [parse_route(m) for m in parse_hex([text]) if m["header"]["type"] in (RTM_NEWROUTE, RTM_DELROUTE)]
        assert len(ours) == len(theirs)
        for (_, mine), reference in zip(ours, theirs):
            if mine is not rtnetlink.UNHANDLED:
                assert mine == reference
                checked += 1
            else:
                unhandled += 1
    assert checked >= 10
    assert unhandled == 0  # IPv6 routes and RTA_VIA gateways decode here too


def test_truncated_and_foreign_messages():
    header = struct.pack("=IHHII", 16 + 4, RTM_NEWROUTE, 0, 0, 0)
    assert rtnetlink.route(header + b"\0" * 4, 0, 20) is rtnetlink.UNHANDLED
    assert list(rtnetlink.messages(struct.pack("=IHHII", 99, 24, 0, 0, 0))) == []
    bridge = struct.pack("=IHHII", 28, RTM_NEWROUTE, 0, 0, 0) + struct.pack("=BBBBBBBBI", 7, 0, 0, 0, 254, 4, 0, 1, 0)
    assert rtnetlink.route(bridge, 0, 28) is None  # AF_BRIDGE: not a family of ours
    ipv6 = struct.pack("=IHHII", 28, RTM_NEWROUTE, 0, 0, 0) + struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 254, 4, 0, 1, 0)
    route = rtnetlink.route(ipv6, 0, 28)
    assert route == KernelRoute("::/0", 0, 1, 4, None, (), ())


def _rta(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)


def _route_message(family: int, dst_len: int, attrs: bytes, rtm_flags: int = 0) -> bytes:
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, 254, 4, 0, 1, rtm_flags) + attrs
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWROUTE, 0, 0, 0) + body


def test_ipv6_via_clones_and_malformed_vias():
    dst = _rta(rtnetlink.RTA_DST, socket.inet_pton(socket.AF_INET6, "2001:db8:5::"))
    oif = _rta(rtnetlink.RTA_OIF, struct.pack("=I", 3))
    via6 = _rta(rtnetlink.RTA_VIA, struct.pack("=H", socket.AF_INET6) + socket.inet_pton(socket.AF_INET6, "fe80::7"))
    msg = _route_message(socket.AF_INET, 16, _rta(rtnetlink.RTA_DST, bytes([10, 9, 0, 0])) + oif + via6)
    route = rtnetlink.route(msg, 0, len(msg))
    assert isinstance(route, KernelRoute) and route.nexthops == (KernelNextHop(3, "fe80::7", 1),)
    # A cache clone (a PMTU exception) is no FIB entry.
    cloned = _route_message(socket.AF_INET6, 48, dst + oif, rtm_flags=0x200)
    assert rtnetlink.route(cloned, 0, len(cloned)) is None
    # Embedded dotted quads come out as ipaddress writes them.
    mapped = _rta(rtnetlink.RTA_GATEWAY, socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.1"))
    msg = _route_message(socket.AF_INET6, 48, dst + oif + mapped)
    route = rtnetlink.route(msg, 0, len(msg))
    assert isinstance(route, KernelRoute) and route.nexthops[0].gateway == "::ffff:a00:1"
    # An RTA_VIA of an unknown family or length goes to pyroute2.
    bad = _rta(rtnetlink.RTA_VIA, struct.pack("=H", 99) + bytes(4))
    msg = _route_message(socket.AF_INET, 16, _rta(rtnetlink.RTA_DST, bytes([10, 9, 0, 0])) + oif + bad)
    assert rtnetlink.route(msg, 0, len(msg)) is rtnetlink.UNHANDLED


@pytest.mark.parametrize("prefix, kept", [
    ("2001:db8::/32", True), ("::/0", True), ("fe80::/64", False), ("fe80::/10", False),
    ("febf:1::/64", False), ("fec0::/10", True), ("ff00::/8", False), ("ff02::1:2/128", False),
])  # fmt: skip
def test_ipv6_link_local_and_multicast_prefixes(build, prefix, kept):
    msg = build.route(prefix, (2, None))
    data = raw(msg)
    decoded = rtnetlink.route(data, 0, len(data))
    assert (decoded is not None) == kept
    assert decoded == parse_route(msg)
