"""The rtnetlink decoder: routes and next-hop objects from raw bytes, malformed input ignored."""

from __future__ import annotations

import socket
import struct

import pytest

from routeflow.client import rtnetlink
from routeflow.client.rtnetlink import KernelNextHop, KernelRoute, NexthopObject

RTM_NEWROUTE, RTM_DELROUTE = 24, 25


def test_truncated_and_foreign_messages():
    header = struct.pack("=IHHII", 16 + 4, RTM_NEWROUTE, 0, 0, 0)
    assert rtnetlink.route(header + b"\0" * 4, 0, 20) is None
    assert list(rtnetlink.messages(struct.pack("=IHHII", 99, 24, 0, 0, 0))) == []
    bridge = struct.pack("=IHHII", 28, RTM_NEWROUTE, 0, 0, 0) + struct.pack("=BBBBBBBBI", 7, 0, 0, 0, 254, 4, 0, 1, 0)
    assert rtnetlink.route(bridge, 0, 28) is None  # AF_BRIDGE: not a family of ours
    ipv6 = struct.pack("=IHHII", 28, RTM_NEWROUTE, 0, 0, 0) + struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 254, 4, 0, 1, 0)
    route = rtnetlink.route(ipv6, 0, 28)
    assert route == KernelRoute("::/0", 0, 1, 4, None, 0, (), ())


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
    # An RTA_VIA of an unknown family or length, a short RTA_OIF: the message is ignored whole.
    bad = _rta(rtnetlink.RTA_VIA, struct.pack("=H", 99) + bytes(4))
    msg = _route_message(socket.AF_INET, 16, _rta(rtnetlink.RTA_DST, bytes([10, 9, 0, 0])) + oif + bad)
    assert rtnetlink.route(msg, 0, len(msg)) is None
    short = _rta(rtnetlink.RTA_OIF, b"\x03")
    msg = _route_message(socket.AF_INET, 16, _rta(rtnetlink.RTA_DST, bytes([10, 9, 0, 0])) + short)
    assert rtnetlink.route(msg, 0, len(msg)) is None


@pytest.mark.parametrize("prefix, kept", [
    ("2001:db8::/32", True), ("::/0", True), ("fe80::/64", False), ("fe80::/10", False),
    ("febf:1::/64", False), ("fec0::/10", True), ("ff00::/8", False), ("ff02::1:2/128", False),
])  # fmt: skip
def test_ipv6_link_local_and_multicast_prefixes(build, prefix, kept):
    msg = build.route(prefix, (2, None))
    decoded = rtnetlink.route(msg, 0, len(msg))
    assert (decoded is not None) == kept


def test_route_through_a_next_hop_object(build):
    msg = build.route("198.18.0.0/24", (3, "10.0.1.2"), nhid=999, proto=188)
    route = rtnetlink.route(msg, 0, len(msg))
    assert route == KernelRoute("198.18.0.0/24", 0, 1, 188, None, 999, (KernelNextHop(3, "10.0.1.2", 1),), (False,))
    # The object, not what the message spelled out, is what the route is.
    other = rtnetlink.route(m := build.route("198.18.0.0/24", (2, "10.0.0.9"), nhid=999, proto=188), 0, len(m))
    assert other is not None and other.identity == route.identity


@pytest.mark.parametrize("message, expected", [
    ({"nhid": 7, "oif": 3, "gateway": "10.0.1.2"}, NexthopObject(7, 3, "10.0.1.2")),
    ({"nhid": 8, "oif": 3, "gateway": "fe80::1"}, NexthopObject(8, 3, "fe80::1")),
    ({"nhid": 9, "oif": 3}, NexthopObject(9, 3)),  # a connected next hop: dev only
    ({"nhid": 10, "blackhole": True}, NexthopObject(10, blackhole=True)),
    ({"nhid": 11, "group": ((7, 1), (8, 3))}, NexthopObject(11, group=((7, 1), (8, 3)))),
    ({"nhid": 12, "oif": 3, "gateway": "10.0.1.2", "flags": 1}, NexthopObject(12, 3, "10.0.1.2", dead=True)),
])  # fmt: skip
def test_next_hop_objects(build, message, expected):
    data = build.nexthop(**message)
    assert rtnetlink.nexthop(data, 0, len(data)) == expected


def test_malformed_next_hop_objects_are_ignored(build):
    good = build.nexthop(11, group=((7, 1),))
    assert rtnetlink.nexthop(good[:20], 0, 20) is None  # shorter than nhmsg
    assert rtnetlink.nexthop(good[:24], 0, 24) is None  # no NHA_ID
    body = struct.pack("=BBBBI", 0, 0, 3, 0, 0) + _rta(rtnetlink.NHA_ID, struct.pack("=I", 11))
    body += _rta(rtnetlink.NHA_GROUP, struct.pack("=IBBH", 7, 0, 0, 0) + bytes(4))  # 12 bytes: not whole entries
    ragged = struct.pack("=IHHII", 16 + len(body), 104, 0, 0, 0) + body
    assert rtnetlink.nexthop(ragged, 0, len(ragged)) is None
    fdb = good + _rta(rtnetlink.NHA_FDB, b"")  # a VXLAN FDB next hop: no route can use it
    assert rtnetlink.nexthop(fdb, 0, len(fdb)) is None
