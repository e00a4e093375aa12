"""Rtnetlink decoding: the kernel's messages as the records the FIB state is built of.

One module decodes what the kernel says; :mod:`routeflow.client.fib` keeps
the state those records build. Routes and next-hop objects, nearly all of a
burst (a million routes from a BGP feed), are decoded here with ``struct``
straight from the datagram bytes, a few microseconds each: ``struct rtmsg``
or ``struct nhmsg`` and a few attributes. Links, addresses and neighbours
are rare and go through pyroute2's parser (:func:`parse`, then
:func:`parse_link`, :func:`parse_address`, :func:`parse_neighbour`). Dumps
are read as raw datagrams too (:func:`dump`).

A malformed message (the kernel sends none) is never half applied: the route
and next-hop decoders return None for it, the others raise :class:`Malformed`
with the reason. pyroute2 is no check of its own: it decodes an attribute by
its length, not by the message's family, and hands back raw bytes for one it
cannot decode (shorter than its header, text that is not UTF-8), so every
value it gives is checked here.

Pure but for :func:`dump`, which opens a socket.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
import struct
from collections.abc import Callable, Iterator
from socket import AF_INET, AF_INET6
from typing import Any, NamedTuple

from routeflow.model import MAC_PATTERN

#: A pyroute2 netlink message (``pyroute2.netlink.nlmsg``); untyped upstream.
NetlinkMessage = Any

#: Address families handled.
FAMILIES = frozenset({AF_INET, AF_INET6})
#: The all-zeros destination of each family (a default route has no RTA_DST).
ANY_ADDRESS = {AF_INET: "0.0.0.0", AF_INET6: "::"}
#: Address bytes of each family.
_WIDTH: dict[int, int] = {AF_INET: 4, AF_INET6: 16}

# Message types (linux/rtnetlink.h).
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106
NLMSG_ERROR, NLMSG_DONE = 2, 3
#: Multicast group of next-hop object events, joined by number (NETLINK_ADD_MEMBERSHIP):
#: it has no RTMGRP_* bind-mask constant.
RTNLGRP_NEXTHOP = 32

# Route attributes (enum rtattr_type_t) and flags.
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_MULTIPATH, RTA_TABLE, RTA_VIA = 1, 4, 5, 6, 7, 9, 15, 18
RTA_NH_ID = 30
RT_TABLE_MAIN = 254
RTNH_F_DEAD = 0x1
#: rtm_flags of a cache clone (an IPv6 exception route), not a FIB entry.
RTM_F_CLONED = 0x200
RTPROT_KERNEL = 2

# Next-hop object attributes (linux/nexthop.h).
NHA_ID, NHA_GROUP, NHA_BLACKHOLE, NHA_OIF, NHA_GATEWAY, NHA_FDB = 1, 2, 4, 5, 6, 11

# Links, addresses, neighbours.
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000
NTF_PROXY = 0x8
#: ifa_flags of IPv6 addresses the router does not own (yet).
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
#: NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT.
NUD_RESOLVED = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NHMSG = struct.Struct("=BBBBI")
_NEXTHOP_GRP = struct.Struct("=IBBH")
_RTATTR = struct.Struct("=HH")
_RTNEXTHOP = struct.Struct("=HBBi")
_U32 = struct.Struct("=I")
_U16 = struct.Struct("=H")


class Malformed(Exception):
    """A message whose layout or values do not hold together: ignored whole. Raised, with
    the reason, by :func:`parse`, :func:`parse_link`, :func:`parse_address` and
    :func:`parse_neighbour`; :func:`route` and :func:`nexthop` return None instead."""


# -- records -------------------------------------------------------------------------


class Link(NamedTuple):
    """A link as the kernel reports it (RTM_NEWLINK)."""

    ifindex: int
    ifname: str
    mac: str
    flags: int
    operstate: str

    @property
    def up(self) -> bool:
        """Administratively up and with carrier."""
        carrier = self.operstate == "UP" or bool(self.flags & IFF_LOWER_UP)
        return bool(self.flags & IFF_UP) and carrier

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)


class Address(NamedTuple):
    """An interface address (RTM_NEWADDR) as ``"a.b.c.d/len"`` or ``"2001:db8::1/64"``;
    not ``usable`` while tentative or after failing duplicate address detection."""

    ifindex: int
    address: str
    usable: bool = True


class KernelNextHop(NamedTuple):
    oif: int
    gateway: str | None
    weight: int


class KernelRoute(NamedTuple):
    """One route of the kernel's main table (one fib alias), before selection."""

    prefix: str
    priority: int
    type: int
    proto: int
    prefsrc: str | None
    #: The next-hop object the route uses (``ip route ... nhid N``), 0 for none.
    nhid: int
    #: The next hops the message spelled out. For a route with ``nhid`` they
    #: are the kernel's expansion of the object (nexthop_compat_mode), which
    #: the object itself overrides once known.
    nexthops: tuple[KernelNextHop, ...]
    #: Per next hop: marked dead by the kernel (its link is down). Not part of
    #: the route's identity, since the kernel flips it without notice.
    dead: tuple[bool, ...]

    @property
    def identity(self) -> tuple[object, ...]:
        # A route through an object is that object whatever it resolves to now.
        return self[:6] if self.nhid else self[:7]


class NexthopObject(NamedTuple):
    """A kernel next-hop object (``ip nexthop``): one next hop, a blackhole, or a
    group of other objects with their weights."""

    id: int
    oif: int = 0
    gateway: str | None = None
    blackhole: bool = False
    #: Marked dead by the kernel.
    dead: bool = False
    #: ``(member id, weight)`` of a group, in the kernel's order; empty for a single next hop.
    group: tuple[tuple[int, int], ...] = ()


class NeighbourEntry(NamedTuple):
    """A neighbour entry; ``mac`` is None when it cannot be used for forwarding."""

    ifindex: int
    ip: str
    mac: str | None


# -- text forms ----------------------------------------------------------------------


def canonical_ip(text: str) -> str:
    """``ipaddress``'s text for an address ``inet_ntop`` wrote; only IPv6 with
    an embedded dotted quad differs, so everything else is returned as is."""
    return str(ipaddress.ip_address(text)) if "." in text and ":" in text else text


def ipv6_noise(dst: str, dst_len: int) -> bool:
    """Whether an IPv6 destination is link-local (fe80::/10) or multicast
    (ff00::/8): never forwarded by a router, so no FIB entry of ours."""
    head = dst.partition(":")[0]
    first = int(head, 16) if head else 0
    return (dst_len >= 8 and first >> 8 == 0xFF) or (dst_len >= 10 and first & 0xFFC0 == 0xFE80)


# -- links, addresses, neighbours: pyroute2 messages ------------------------------------


#: Bytes of the fixed header after nlmsghdr (ifinfomsg, ifaddrmsg, ndmsg) of each message
#: type :func:`parse` hands to pyroute2, which raises ``struct.error`` for a shorter body.
PARSED = {RTM_NEWLINK: 16, RTM_DELLINK: 16, RTM_NEWADDR: 8, RTM_DELADDR: 8, RTM_NEWNEIGH: 12, RTM_DELNEIGH: 12}


def parse(marshal: Any, data: bytes, start: int, end: int) -> list[NetlinkMessage]:
    """pyroute2's messages (``marshal``: a ``MarshalRtnl``) of one link, address or
    neighbour message ``data[start:end]`` (of a type in :data:`PARSED`).

    Raises :class:`Malformed` if its body is shorter than its fixed header or an
    attribute is shorter than its own header or runs past the message.
    """
    kind = _NLMSGHDR.unpack_from(data, start)[1]
    offset = start + _NLMSGHDR.size + PARSED[kind]
    if offset > end:
        raise Malformed(f"{end - start} bytes, too short for a message of type {kind}")
    # pyroute2 makes such an attribute raw bytes, or a value of the bytes after it.
    while offset + _RTATTR.size <= end:
        length, attr = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > end:
            raise Malformed(f"attribute {attr} at byte {offset - start}: length {length}, {end - offset} bytes left")
        offset += (length + 3) & ~3
    return list(marshal.parse(data[start:end]))


def _attrs(msg: NetlinkMessage) -> dict[str, Any]:
    # One pass: pyroute2 decodes attributes lazily and get_attr() scans them every time.
    return dict(msg["attrs"])


def _value(attrs: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """Attribute ``name`` (``default`` if absent), which must be a ``kind``: pyroute2
    hands back raw bytes for one it could not decode."""
    value = attrs.get(name, default)
    if not isinstance(value, kind):
        raise Malformed(f"{name} {value!r} is no {kind.__name__}")
    return value


def _address(family: int, name: str, value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The ``value`` of address attribute ``name``, which must be an address of the message's ``family``."""
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:  # text, but no address
        address = None
    if address is None or len(address.packed) != _WIDTH[family]:
        raise Malformed(f"{name} {value!r} is no address of family {family}")
    return address


def parse_link(msg: NetlinkMessage) -> Link | None:
    """A link message; None for per-family variants (e.g. AF_BRIDGE port info).

    Raises :class:`Malformed` for a name, address or operational state that is not text.
    """
    if msg["family"] != 0:
        return None
    attrs = _attrs(msg)
    name = _value(attrs, "IFLA_IFNAME", str, "")
    operstate = _value(attrs, "IFLA_OPERSTATE", str, "UNKNOWN")
    if not name:
        raise Malformed("a link without a name")  # the kernel names every link
    # A link that is not Ethernet has no MAC: an ipip link's address is its 4-byte IPv4
    # endpoint (pyroute2 hands it back raw), a WireGuard or tun link has none.
    mac = attrs.get("IFLA_ADDRESS")
    mac = mac.lower() if isinstance(mac, str) and re.fullmatch(MAC_PATTERN, mac.lower()) else ""
    return Link(msg["index"], name, mac, msg["flags"], operstate)


def parse_address(msg: NetlinkMessage) -> Address | None:
    """An address message; None for unsupported families and for one without an address.

    Raises :class:`Malformed` for an address not of the message's family, a prefix
    length longer than the family's addresses, or IFA_FLAGS that are not a number.
    """
    family = msg["family"]
    if family not in FAMILIES:
        return None
    attrs = _attrs(msg)
    # IFA_LOCAL is our end of a point-to-point link; IFA_ADDRESS is then the peer.
    name = "IFA_LOCAL" if "IFA_LOCAL" in attrs else "IFA_ADDRESS"
    if name not in attrs:
        return None
    address = _address(family, name, attrs[name])
    if msg["prefixlen"] > address.max_prefixlen:
        raise Malformed(f"prefix length {msg['prefixlen']} of {address}")
    flags = _value(attrs, "IFA_FLAGS", int, msg["flags"])  # IFA_FLAGS: all 32 bits, ifa_flags the low 8
    usable = not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
    return Address(msg["index"], f"{address}/{msg['prefixlen']}", usable)


def _unicast_ethernet(mac: str) -> bool:
    # Broadcast and multicast groups get NOARP entries too; they are not next hops.
    return len(mac) == 17 and not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00"


def parse_neighbour(msg: NetlinkMessage) -> NeighbourEntry | None:
    """A neighbour message; None for unsupported families, proxy entries and one without NDA_DST.

    Raises :class:`Malformed` for an NDA_DST not of the message's family or an NDA_LLADDR
    that is not text.
    """
    if msg["family"] not in FAMILIES or msg["flags"] & NTF_PROXY:
        return None
    attrs = _attrs(msg)
    if "NDA_DST" not in attrs:
        return None
    ip = _address(msg["family"], "NDA_DST", attrs["NDA_DST"])
    mac = _value(attrs, "NDA_LLADDR", str, "").lower()
    usable = msg["state"] & NUD_RESOLVED and _unicast_ethernet(mac)
    return NeighbourEntry(msg["ifindex"], str(ip), mac if usable else None)


# -- routes and next-hop objects: bytes --------------------------------------------------


def messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(type, flags, start, end)`` of each netlink message in a datagram."""
    offset, size = 0, len(data)
    while offset + _NLMSGHDR.size <= size:
        length, kind, flags, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > size:
            return
        yield kind, flags, offset, offset + length
        offset += (length + 3) & ~3


# Attribute decoders: ``(family of the message, data, start, end)`` to a value.


def _ip(family: int, data: bytes, start: int, end: int) -> str:
    if end - start != _WIDTH.get(family):
        raise Malformed
    text = socket.inet_ntop(family, data[start:end])
    return canonical_ip(text) if family == AF_INET6 else text


def _u32(_: int, data: bytes, start: int, end: int) -> int:
    if end - start < 4:
        raise Malformed
    return int(_U32.unpack_from(data, start)[0])


def _flag(*_: object) -> bool:
    return True


def _via(_: int, data: bytes, start: int, end: int) -> str:
    """RTA_VIA (``struct rtvia``: a family, then the address): a gateway of
    another family than the route's, such as IPv4 over IPv6 (RFC 5549)."""
    if end - start < 2:
        raise Malformed
    (family,) = _U16.unpack_from(data, start)
    return _ip(family, data, start + 2, end)


def _multipath(family: int, data: bytes, offset: int, end: int) -> list[tuple[KernelNextHop, bool]]:
    """RTA_MULTIPATH: ``struct rtnexthop`` legs, each with its own attributes."""
    legs = []
    while offset + _RTNEXTHOP.size <= end:
        length, flags, hops, ifindex = _RTNEXTHOP.unpack_from(data, offset)
        if length < _RTNEXTHOP.size or offset + length > end:
            raise Malformed
        leg = _decode(_LEG_ATTRIBUTES, family, data, offset + _RTNEXTHOP.size, offset + length)
        legs.append((KernelNextHop(ifindex, leg.get("gateway"), hops + 1), bool(flags & RTNH_F_DEAD)))
        offset += (length + 3) & ~3
    return legs


def _group(_: int, data: bytes, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """NHA_GROUP: ``struct nexthop_grp`` entries; the kernel stores weight - 1, as in rtnexthop."""
    if (end - start) % _NEXTHOP_GRP.size:
        raise Malformed
    return tuple((member, weight + 1) for member, weight, _, _ in _NEXTHOP_GRP.iter_unpack(data[start:end]))


#: An attribute table: attribute type -> (field name, decoder). Attributes not listed are skipped.
Attributes = dict[int, tuple[str, Callable[[int, bytes, int, int], Any]]]

_ROUTE_ATTRIBUTES: Attributes = {
    RTA_DST: ("dst", _ip),
    RTA_OIF: ("oif", _u32),
    RTA_GATEWAY: ("gateway", _ip),
    RTA_PRIORITY: ("priority", _u32),
    RTA_PREFSRC: ("prefsrc", _ip),
    RTA_MULTIPATH: ("multipath", _multipath),
    RTA_TABLE: ("table", _u32),
    RTA_VIA: ("gateway", _via),
    RTA_NH_ID: ("nhid", _u32),
}
_LEG_ATTRIBUTES: Attributes = {RTA_GATEWAY: ("gateway", _ip), RTA_VIA: ("gateway", _via)}
_NEXTHOP_ATTRIBUTES: Attributes = {
    NHA_ID: ("id", _u32),
    NHA_GROUP: ("group", _group),
    NHA_BLACKHOLE: ("blackhole", _flag),
    NHA_OIF: ("oif", _u32),
    NHA_GATEWAY: ("gateway", _ip),
    NHA_FDB: ("fdb", _flag),
}


def _decode(table: Attributes, family: int, data: bytes, offset: int, end: int) -> dict[str, Any]:
    """The attributes between ``offset`` and ``end`` that ``table`` names, by field name."""
    fields = {}
    unpack = _RTATTR.unpack_from
    while offset + 4 <= end:  # a plain loop, not a generator: this runs for every route of a full table
        length, kind = unpack(data, offset)
        if length < 4 or offset + length > end:
            break
        known = table.get(kind & 0x3FFF)
        if known is not None:
            fields[known[0]] = known[1](family, data, offset + 4, offset + length)
        offset += (length + 3) & ~3
    return fields


def route(data: bytes, start: int, end: int) -> KernelRoute | None:
    """Decode one RTM_NEWROUTE/RTM_DELROUTE message (``data[start:end]``).

    None for what routeflow ignores: another table or family, a tos, a cache
    clone, an IPv6 link-local or multicast prefix, or a malformed message
    (the kernel sends none; ignoring it beats acting on half of one).
    Route types are kept whatever they are: they still shadow worse routes.
    """
    body = start + _NLMSGHDR.size
    if end - body < _RTMSG.size:
        return None
    family, dst_len, _, tos, table, proto, _, rtype, flags = _RTMSG.unpack_from(data, body)
    if family not in _WIDTH or tos != 0 or flags & RTM_F_CLONED:
        return None
    try:
        fields = _decode(_ROUTE_ATTRIBUTES, family, data, body + _RTMSG.size, end)
    except Malformed:
        return None
    if fields.get("table", table) != RT_TABLE_MAIN:
        return None
    dst = fields.get("dst") or ANY_ADDRESS[family]
    if family == AF_INET6 and ipv6_noise(dst, dst_len):
        return None
    hops = fields.get("multipath")
    if not hops:
        oif = fields.get("oif")
        hops = [] if oif is None else [(KernelNextHop(oif, fields.get("gateway"), 1), bool(flags & RTNH_F_DEAD))]
    return KernelRoute(
        prefix=f"{dst}/{dst_len}",
        priority=fields.get("priority", 0),
        type=rtype,
        proto=proto,
        prefsrc=fields.get("prefsrc"),
        nhid=fields.get("nhid", 0),
        nexthops=_shared(tuple(hop for hop, _ in hops)),
        dead=_shared(tuple(dead for _, dead in hops)),
    )


@functools.lru_cache(maxsize=65536)
def _shared(value: tuple[Any, ...]) -> tuple[Any, ...]:
    """One copy of each next-hop set: a large FIB has few, shared by many routes."""
    return value


def nexthop(data: bytes, start: int, end: int) -> NexthopObject | None:
    """Decode one RTM_NEWNEXTHOP/RTM_DELNEXTHOP message (``data[start:end]``).

    None for a malformed message and for objects no route can use (FDB next
    hops of a VXLAN bridge). A delete carries the whole object, like a new one.
    """
    body = start + _NLMSGHDR.size
    if end - body < _NHMSG.size:
        return None
    family, _, _, _, flags = _NHMSG.unpack_from(data, body)
    try:
        fields = _decode(_NEXTHOP_ATTRIBUTES, family, data, body + _NHMSG.size, end)
    except Malformed:
        return None
    if "id" not in fields or fields.pop("fdb", False):
        return None
    return NexthopObject(dead=bool(flags & RTNH_F_DEAD), **fields)


# -- dumps ---------------------------------------------------------------------------

_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_RECV = 1 << 20
#: Bytes of each GET request's header after the netlink one (all start with a family byte).
_REQUEST_BODY = {RTM_GETLINK: 16, RTM_GETNEXTHOP: 8}


def dump(request: int, family: int = socket.AF_UNSPEC) -> list[bytes]:
    """The datagrams of one rtnetlink dump (blocking; run it in a thread).

    Raw bytes, so that dumps go through the same decoders as events.
    """
    body = bytes([family]) + bytes(_REQUEST_BODY.get(request, 12) - 1)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * _RECV)
        sock.bind((0, 0))
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), request, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + body)
        datagrams = []
        while True:
            data = sock.recv(_RECV)
            for kind, _, start, end in messages(data):
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    # Both carry an error code: a dump can fail at its end, too.
                    error = struct.unpack_from("=i", data, start + _NLMSGHDR.size)[0] if end - start >= 20 else 0
                    if error:
                        raise OSError(-error, f"netlink dump {request} failed: {os.strerror(-error)}")
                    if kind == NLMSG_DONE:
                        datagrams.append(data)
                        return datagrams
            datagrams.append(data)
