"""The netlink decoder: routes and next-hop objects from raw bytes, malformed input ignored; links,
addresses and neighbours from raw bytes, malformed ones rejected as ``Malformed``."""

from __future__ import annotations

import socket
import struct
from typing import Any

import msgspec
import pytest

from routeflow.client import netlink
from routeflow.client.netlink import ATTRIBUTE, KernelNextHop, KernelRoute, NexthopObject
from routeflow.model import Interface

RTM_NEWROUTE, RTM_DELROUTE = 24, 25


def test_truncated_and_foreign_messages():
    header = struct.pack("=IHHII", 16 + 4, RTM_NEWROUTE, 0, 0, 0)
    assert netlink.route(header + b"\0" * 4, 0, 20) is None
    assert list(netlink.messages(struct.pack("=IHHII", 99, 24, 0, 0, 0))) == []
    bridge = struct.pack("=IHHII", 28, RTM_NEWROUTE, 0, 0, 0) + struct.pack("=BBBBBBBBI", 7, 0, 0, 0, 254, 4, 0, 1, 0)
    assert netlink.route(bridge, 0, 28) is None  # AF_BRIDGE: not a family of ours
    ipv6 = struct.pack("=IHHII", 28, RTM_NEWROUTE, 0, 0, 0) + struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 254, 4, 0, 1, 0)
    route = netlink.route(ipv6, 0, 28)
    assert route == KernelRoute("::/0", 0, 1, 4, None, 0, (), ())


def _rta(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)


def _route_message(family: int, dst_len: int, attrs: bytes, rtm_flags: int = 0) -> bytes:
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, 254, 4, 0, 1, rtm_flags) + attrs
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWROUTE, 0, 0, 0) + body


def test_ipv6_via_clones_and_malformed_vias():
    dst = _rta(ATTRIBUTE["RTA_DST"], socket.inet_pton(socket.AF_INET6, "2001:db8:5::"))
    oif = _rta(ATTRIBUTE["RTA_OIF"], struct.pack("=I", 3))
    via6 = _rta(ATTRIBUTE["RTA_VIA"], struct.pack("=H", socket.AF_INET6) + socket.inet_pton(socket.AF_INET6, "fe80::7"))
    msg = _route_message(socket.AF_INET, 16, _rta(ATTRIBUTE["RTA_DST"], bytes([10, 9, 0, 0])) + oif + via6)
    route = netlink.route(msg, 0, len(msg))
    assert isinstance(route, KernelRoute) and route.nexthops == (KernelNextHop(3, "fe80::7", 1),)
    # A cache clone (a PMTU exception) is no FIB entry.
    cloned = _route_message(socket.AF_INET6, 48, dst + oif, rtm_flags=0x200)
    assert netlink.route(cloned, 0, len(cloned)) is None
    # Embedded dotted quads come out as ipaddress writes them.
    mapped = _rta(ATTRIBUTE["RTA_GATEWAY"], socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.1"))
    msg = _route_message(socket.AF_INET6, 48, dst + oif + mapped)
    route = netlink.route(msg, 0, len(msg))
    assert isinstance(route, KernelRoute) and route.nexthops[0].gateway == "::ffff:a00:1"
    # An RTA_VIA of an unknown family or length, a short RTA_OIF: the message is ignored whole.
    bad = _rta(ATTRIBUTE["RTA_VIA"], struct.pack("=H", 99) + bytes(4))
    msg = _route_message(socket.AF_INET, 16, _rta(ATTRIBUTE["RTA_DST"], bytes([10, 9, 0, 0])) + oif + bad)
    assert netlink.route(msg, 0, len(msg)) is None
    short = _rta(ATTRIBUTE["RTA_OIF"], b"\x03")
    msg = _route_message(socket.AF_INET, 16, _rta(ATTRIBUTE["RTA_DST"], bytes([10, 9, 0, 0])) + short)
    assert netlink.route(msg, 0, len(msg)) is None
    # An attribute shorter than its header or past the message, after good ones: not half applied either.
    good = _rta(ATTRIBUTE["RTA_DST"], bytes([10, 9, 0, 0])) + oif
    for bad in (struct.pack("=HH", 2, 99), struct.pack("=HH", 40, 99) + bytes(4)):
        msg = _route_message(socket.AF_INET, 16, good + bad)
        assert netlink.route(msg, 0, len(msg)) is None


@pytest.mark.parametrize("prefix, kept", [
    ("2001:db8::/32", True), ("::/0", True), ("fe80::/64", False), ("fe80::/10", False),
    ("febf:1::/64", False), ("fec0::/10", True), ("ff00::/8", False), ("ff02::1:2/128", False),
])  # fmt: skip
def test_ipv6_link_local_and_multicast_prefixes(build, prefix, kept):
    msg = build.route(prefix, (2, None))
    decoded = netlink.route(msg, 0, len(msg))
    assert (decoded is not None) == kept


def test_route_through_a_next_hop_object(build):
    msg = build.route("198.18.0.0/24", (3, "10.0.1.2"), nhid=999, proto=188)
    route = netlink.route(msg, 0, len(msg))
    assert route == KernelRoute("198.18.0.0/24", 0, 1, 188, None, 999, (KernelNextHop(3, "10.0.1.2", 1),), (False,))
    # The object, not what the message spelled out, is what the route is.
    other = netlink.route(m := build.route("198.18.0.0/24", (2, "10.0.0.9"), nhid=999, proto=188), 0, len(m))
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
    assert netlink.nexthop(data, 0, len(data)) == expected


def test_malformed_next_hop_objects_are_ignored(build):
    good = build.nexthop(11, group=((7, 1),))
    assert netlink.nexthop(good[:20], 0, 20) is None  # shorter than nhmsg
    assert netlink.nexthop(good[:24], 0, 24) is None  # no NHA_ID
    body = struct.pack("=BBBBI", 0, 0, 3, 0, 0) + _rta(ATTRIBUTE["NHA_ID"], struct.pack("=I", 11))
    body += _rta(ATTRIBUTE["NHA_GROUP"], struct.pack("=IBBH", 7, 0, 0, 0) + bytes(4))  # 12 bytes: not whole entries
    ragged = struct.pack("=IHHII", 16 + len(body), 104, 0, 0, 0) + body
    assert netlink.nexthop(ragged, 0, len(ragged)) is None
    fdb = good + _rta(ATTRIBUTE["NHA_FDB"], b"")  # a VXLAN FDB next hop: no route can use it
    assert netlink.nexthop(fdb, 0, len(fdb)) is None


# -- links, addresses, neighbours: malformed ones are rejected with the reason --------------------

IFLA_ADDRESS, IFLA_IFNAME, IFLA_OPERSTATE = 1, 3, 16
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
NDA_DST, NDA_LLADDR = 1, 2

_DECODERS = {netlink.RTM_NEWLINK: netlink.link, netlink.RTM_DELADDR: netlink.address,
             netlink.RTM_NEWADDR: netlink.address, netlink.RTM_NEWNEIGH: netlink.neighbour}


def _parsed(kind: int, fixed: bytes, *attrs: bytes) -> Any:
    """The record of one hand-built message, decoded by the decoder of its type."""
    body = fixed + b"".join(attrs)
    data = struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body
    return _DECODERS[kind](data, 0, len(data))


def _link(*attrs: bytes) -> netlink.Link | None:
    return _parsed(netlink.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 2, 0x10043, 0), *attrs)


def _address(family: int, prefixlen: int, *attrs: bytes) -> netlink.Address | None:
    return _parsed(netlink.RTM_NEWADDR, struct.pack("=BBBBI", family, prefixlen, 0, 0, 2), *attrs)


def _neighbour(family: int, *attrs: bytes) -> netlink.NeighbourEntry | None:
    return _parsed(netlink.RTM_NEWNEIGH, struct.pack("=BxxxiHBB", family, 2, 0x02, 0, 0), *attrs)


MAC = _rta(IFLA_ADDRESS, bytes.fromhex("020000000002"))


def test_messages_shorter_than_their_fixed_header_are_malformed():
    for kind, fixed in [(netlink.RTM_NEWLINK, 16), (netlink.RTM_DELADDR, 8), (netlink.RTM_NEWNEIGH, 12)]:
        with pytest.raises(netlink.Malformed, match="too short"):
            _parsed(kind, bytes(fixed - 1))
    # Exactly the fixed header is long enough: a link of no name, an address and a neighbour of family 0.
    with pytest.raises(netlink.Malformed, match="without a name"):
        _parsed(netlink.RTM_NEWLINK, bytes(16))
    assert _parsed(netlink.RTM_DELADDR, bytes(8)) is None and _parsed(netlink.RTM_NEWNEIGH, bytes(12)) is None


@pytest.mark.parametrize("attr, reason", [
    (struct.pack("=HH", 1, IFLA_IFNAME) + b"eth1\0\0\0\0", "attribute 3 at byte 32: length 1, 24 bytes left"),
    (struct.pack("=HH", 3, IFLA_ADDRESS) + bytes(8), "attribute 1 at byte 32: length 3, 24 bytes left"),
    (struct.pack("=HH", 40, IFLA_IFNAME) + b"eth1\0\0\0\0", "attribute 3 at byte 32: length 40, 24 bytes left"),
])  # fmt: skip
def test_attributes_shorter_than_their_header_or_past_the_message_are_malformed(attr, reason):
    with pytest.raises(netlink.Malformed, match=reason):
        _parsed(netlink.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 2, 0x10043, 0), attr, MAC)


def test_link_attributes_must_be_text():
    assert _link(_rta(IFLA_IFNAME, b"eth1\0"), MAC) == netlink.Link(2, "eth1", "02:00:00:00:00:02", 0x10043,
                                                                      "UNKNOWN")
    for bad in (_rta(IFLA_IFNAME, b"\xff\xfe\0"), _rta(IFLA_OPERSTATE, b"\xc8")):  # not UTF-8, no such state
        with pytest.raises(netlink.Malformed, match="is no str"):
            _link(bad, MAC)


def test_a_link_without_an_ethernet_address_has_none_and_one_without_a_name_is_malformed():
    ipip = _link(_rta(IFLA_IFNAME, b"tun0\0"), _rta(IFLA_ADDRESS, bytes([10, 0, 0, 1])))
    assert ipip is not None and ipip.mac == ""
    # It goes to the server as an interface, whose decoder takes it: a tunnel's addresses are the router's.
    iface = Interface("tun0", ipip.mac, True, ("10.9.9.1/32",))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(iface), type=Interface) == iface
    with pytest.raises(netlink.Malformed, match="without a name"):
        _link(MAC)


def test_a_link_address_is_a_mac_only_when_it_is_six_bytes():
    # The kernel follows an ipip link's IFLA_ADDRESS (its IPv4 endpoint) with IFLA_BROADCAST: no MAC of the
    # endpoint and the next attribute's header. Longer addresses (InfiniBand: 20 bytes) are no MAC either.
    ipip = _link(_rta(IFLA_IFNAME, b"tun0\0"), _rta(IFLA_ADDRESS, bytes([10, 0, 0, 1])), _rta(2, bytes(4)))
    infiniband = _link(_rta(IFLA_IFNAME, b"ib0\0"), _rta(IFLA_ADDRESS, bytes(range(1, 21))))
    assert ipip is not None and ipip.mac == "" and infiniband is not None and infiniband.mac == ""


@pytest.mark.parametrize("family, attr", [
    (socket.AF_INET, _rta(IFA_LOCAL, bytes(3))),
    (socket.AF_INET6, _rta(IFA_ADDRESS, bytes([10, 0, 1, 1]))),  # an IPv4 address in an IPv6 message
    (socket.AF_INET, _rta(IFA_LOCAL, socket.inet_pton(socket.AF_INET6, "2001:db8::1"))),
])  # fmt: skip
def test_addresses_must_be_of_their_family(family, attr):
    with pytest.raises(netlink.Malformed, match="no address of family"):
        _address(family, 24, attr)


def test_address_prefix_lengths_must_fit_their_family():
    v4, v6 = _rta(IFA_LOCAL, bytes([10, 0, 1, 1])), _rta(IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "::ffff:a00:1"))
    assert _address(socket.AF_INET, 32, v4) == netlink.Address(2, "10.0.1.1/32")
    assert _address(socket.AF_INET6, 128, v6) == netlink.Address(2, "::ffff:a00:1/128")  # ipaddress's text
    for family, prefixlen, attr in [(socket.AF_INET, 33, v4), (socket.AF_INET, 40, v4), (socket.AF_INET6, 129, v6)]:
        with pytest.raises(netlink.Malformed, match=f"prefix length {prefixlen} of"):
            _address(family, prefixlen, attr)
    with pytest.raises(netlink.Malformed, match="IFA_FLAGS"):
        _address(socket.AF_INET, 24, v4, struct.pack("=HH", 4, IFA_FLAGS))  # no value


def test_neighbour_addresses_must_be_of_their_family():
    dst = _rta(NDA_DST, bytes([10, 0, 1, 2]))
    assert _neighbour(socket.AF_INET, dst, _rta(NDA_LLADDR, bytes.fromhex("0200000000aa"))) == \
        netlink.NeighbourEntry(2, "10.0.1.2", "02:00:00:00:00:aa")
    with pytest.raises(netlink.Malformed, match="NDA_DST"):
        _neighbour(socket.AF_INET, _rta(NDA_DST, bytes(5)))
    with pytest.raises(netlink.Malformed, match="NDA_DST"):
        _neighbour(socket.AF_INET6, dst)
