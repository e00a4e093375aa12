"""Netlink decoding: the kernel's rtnetlink messages as the records the FIB state is built of.

The RF-Client's one decoder. The watcher reads the kernel's datagrams raw from
its own sockets, dumps and events alike (:mod:`routeflow.client.watcher`), and
every message of them is decoded here with ``struct``: the fixed header of its
type (``struct rtmsg``, ``nhmsg``, ``ifinfomsg``, ``ifaddrmsg``, ``ndmsg``),
then its attributes through one table per kind of message, a row per
attribute: its type, its name in the kernel's headers and the codec of its
value (pyroute2's ``nla_map``, as data). Attributes no table names are
skipped. Routes, nearly all of a burst (a million from a BGP feed), take a
few microseconds each.

A malformed message (the kernel sends none) is never half applied:
:func:`route` and :func:`nexthop` return None for it, :func:`link`,
:func:`address` and :func:`neighbour` raise :class:`Malformed` with the
reason. Each of them returns None for a message of a family routeflow does
not handle, unread. Pure: no socket, no state.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterator
from socket import AF_INET, AF_INET6
from typing import Any, NamedTuple

from routeflow.model import RouteType

#: Address families handled.
FAMILIES = frozenset({AF_INET, AF_INET6})
#: The all-zeros destination of each family (a default route has no RTA_DST).
ANY_ADDRESS = {AF_INET: "0.0.0.0", AF_INET6: "::"}
#: Address bytes of each family.
_WIDTH: dict[int, int] = {AF_INET: 4, AF_INET6: 16}

# Message types (linux/rtnetlink.h) and header flags (linux/netlink.h).
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLM_F_REPLACE, NLM_F_APPEND = 0x100, 0x800

# Multicast groups: bind-mask bits (RTMGRP_*), and group numbers (RTNLGRP_*) of those without one.
RTMGRP_LINK, RTMGRP_NEIGH = 0x1, 0x4
RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
RTNLGRP_NEXTHOP = 32

# Routes and next hops.
RT_TABLE_MAIN = 254
RTNH_F_DEAD = 0x1
#: rtm_flags of a cache clone (an IPv6 exception route), not a FIB entry.
RTM_F_CLONED = 0x200
RTPROT_KERNEL = 2
#: The route types (RTN_*) that forward, by their model name; any other one does not.
ROUTE_TYPES: dict[int, RouteType] = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
#: Route protocols (RTPROT_*): ``/etc/iproute2/rt_protos`` plus the numbers FRR registers for its daemons.
PROTO_NAMES = {
    0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
    10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
    17: "mrouted", 18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis",
    188: "ospf", 189: "rip", 190: "ripng", 191: "nhrp", 192: "eigrp", 193: "ldp",
    194: "sharp", 195: "pbr", 196: "static", 197: "openfabric",
}  # fmt: skip

# Links, addresses, neighbours.
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000
#: IFLA_OPERSTATE values (IF_OPER_*), by number.
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
NTF_PROXY = 0x8
#: ifa_flags of IPv6 addresses the router does not own (yet).
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
#: NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT.
NUD_RESOLVED = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80

_NLMSGHDR = struct.Struct("=IHHII")
_BODY = _NLMSGHDR.size  # where the fixed header starts; every one is whole words: attributes follow it
_RTMSG = struct.Struct("=BBBBBBBBI")
_NHMSG = struct.Struct("=BBBBI")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_NEXTHOP_GRP = struct.Struct("=IBBH")
_RTATTR = struct.Struct("=HH")
_RTNEXTHOP = struct.Struct("=HBBi")
_U32 = struct.Struct("=I")
_U16 = struct.Struct("=H")
_ERROR = struct.Struct("=i")


class Malformed(Exception):
    """A message whose layout or values do not hold together: ignored whole. Raised, with
    the reason, by :func:`link`, :func:`address` and :func:`neighbour`; :func:`route`
    and :func:`nexthop` return None instead."""


# -- records -------------------------------------------------------------------------


class Link(NamedTuple):
    """A link as the kernel reports it (RTM_NEWLINK)."""

    ifindex: int
    ifname: str
    #: Its Ethernet address; '' for a link that has none (a tunnel: ipip, GRE, WireGuard, tun).
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


def _canonical_ip(text: str) -> str:
    """``ipaddress``'s text for an address ``inet_ntop`` wrote; only IPv6 with
    an embedded dotted quad differs, so everything else is returned as is."""
    return str(ipaddress.ip_address(text)) if "." in text and ":" in text else text


def _ipv6_noise(dst: str, dst_len: int) -> bool:
    """Whether an IPv6 destination is link-local (fe80::/10) or multicast
    (ff00::/8): never forwarded by a router, so no FIB entry of ours."""
    head = dst.partition(":")[0]
    first = int(head, 16) if head else 0
    return (dst_len >= 8 and first >> 8 == 0xFF) or (dst_len >= 10 and first & 0xFFC0 == 0xFE80)


def proto_name(proto: int) -> str:
    """``ospf`` for 188 and so on; the number itself when unknown."""
    return PROTO_NAMES.get(proto, str(proto))


# -- codecs: (family of the message, data, start, end) of a value -> the value --------
# A codec raises Malformed naming what the value is not.


def _ip(family: int, data: bytes, start: int, end: int) -> str:
    if end - start != _WIDTH.get(family):
        raise Malformed(f"address of family {family}")
    text = socket.inet_ntop(family, data[start:end])
    return _canonical_ip(text) if family == AF_INET6 else text


def _u32(_: int, data: bytes, start: int, end: int) -> int:
    if end - start < 4:
        raise Malformed("int")
    return int(_U32.unpack_from(data, start)[0])


def _flag(*_: object) -> bool:
    return True


def _text(_: int, data: bytes, start: int, end: int) -> str:
    """A C string (up to its first NUL), UTF-8."""
    try:
        return data[start:end].split(b"\0", 1)[0].decode()
    except UnicodeDecodeError:
        raise Malformed("str") from None


def _mac(_: int, data: bytes, start: int, end: int) -> str:
    """An Ethernet address as ``02:00:00:00:00:0a``; '' for a link-layer address of
    another length (an ipip link's is its IPv4 endpoint, a tun link has none)."""
    return data[start:end].hex(":") if end - start == 6 else ""


def _operstate(_: int, data: bytes, start: int, end: int) -> str:
    if end == start or data[start] >= len(OPERSTATES):
        raise Malformed("str")
    return OPERSTATES[data[start]]


def _via(_: int, data: bytes, start: int, end: int) -> str:
    """RTA_VIA (``struct rtvia``: a family, then the address): a gateway of
    another family than the route's, such as IPv4 over IPv6 (RFC 5549)."""
    if end - start < 2:
        raise Malformed("rtvia")
    (family,) = _U16.unpack_from(data, start)
    return _ip(family, data, start + 2, end)


def _multipath(family: int, data: bytes, offset: int, end: int) -> list[tuple[KernelNextHop, bool]]:
    """RTA_MULTIPATH: ``struct rtnexthop`` legs, each with its own attributes."""
    legs = []
    while offset + _RTNEXTHOP.size <= end:
        length, flags, hops, ifindex = _RTNEXTHOP.unpack_from(data, offset)
        if length < _RTNEXTHOP.size or offset + length > end:
            raise Malformed("rtnexthop list")
        leg = _attributes(LEG_ATTRIBUTES, family, data, offset, offset + _RTNEXTHOP.size, offset + length)
        gateway = leg.get("RTA_GATEWAY") or leg.get("RTA_VIA")
        legs.append((KernelNextHop(ifindex, gateway, hops + 1), bool(flags & RTNH_F_DEAD)))
        offset += (length + 3) & ~3
    return legs


def _group(_: int, data: bytes, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """NHA_GROUP: ``struct nexthop_grp`` entries; the kernel stores weight - 1, as in rtnexthop."""
    if (end - start) % _NEXTHOP_GRP.size:
        raise Malformed("nexthop_grp list")
    return tuple((member, weight + 1) for member, weight, _, _ in _NEXTHOP_GRP.iter_unpack(data[start:end]))


# -- attribute tables ------------------------------------------------------------------

Codec = Callable[[int, bytes, int, int], Any]
#: An attribute table: attribute type -> (its name in the kernel's headers, codec).
Attributes = dict[int, tuple[str, Codec]]

#: A route's attributes (enum rtattr_type_t).
ROUTE_ATTRIBUTES: Attributes = {
    1: ("RTA_DST", _ip),
    4: ("RTA_OIF", _u32),
    5: ("RTA_GATEWAY", _ip),
    6: ("RTA_PRIORITY", _u32),
    7: ("RTA_PREFSRC", _ip),
    9: ("RTA_MULTIPATH", _multipath),
    15: ("RTA_TABLE", _u32),
    18: ("RTA_VIA", _via),
    30: ("RTA_NH_ID", _u32),
}
#: The attributes of a multipath leg (after its ``struct rtnexthop``).
LEG_ATTRIBUTES: Attributes = {5: ("RTA_GATEWAY", _ip), 18: ("RTA_VIA", _via)}
#: A next-hop object's attributes (linux/nexthop.h).
NEXTHOP_ATTRIBUTES: Attributes = {
    1: ("NHA_ID", _u32),
    2: ("NHA_GROUP", _group),
    4: ("NHA_BLACKHOLE", _flag),
    5: ("NHA_OIF", _u32),
    6: ("NHA_GATEWAY", _ip),
    11: ("NHA_FDB", _flag),
}
#: A link's attributes (linux/if_link.h).
LINK_ATTRIBUTES: Attributes = {1: ("IFLA_ADDRESS", _mac), 3: ("IFLA_IFNAME", _text), 16: ("IFLA_OPERSTATE", _operstate)}
#: An address's attributes (linux/if_addr.h): IFA_LOCAL is our end of a point-to-point
#: link, IFA_ADDRESS then the peer; IFA_FLAGS all 32 bits of which ifa_flags has the low 8.
ADDRESS_ATTRIBUTES: Attributes = {1: ("IFA_ADDRESS", _ip), 2: ("IFA_LOCAL", _ip), 8: ("IFA_FLAGS", _u32)}
#: A neighbour's attributes (linux/neighbour.h).
NEIGHBOUR_ATTRIBUTES: Attributes = {1: ("NDA_DST", _ip), 2: ("NDA_LLADDR", _mac)}

#: Attribute type by name, of every table.
ATTRIBUTE = {
    name: kind
    for table in (ROUTE_ATTRIBUTES, NEXTHOP_ATTRIBUTES, LINK_ATTRIBUTES, ADDRESS_ATTRIBUTES, NEIGHBOUR_ATTRIBUTES)
    for kind, (name, _) in table.items()
}


def _attributes(table: Attributes, family: int, data: bytes, base: int, offset: int, end: int) -> dict[str, Any]:
    """The values of the attributes between ``offset`` and ``end`` that ``table`` names,
    by name (the last of a name wins). Raises :class:`Malformed` for an attribute shorter
    than its header, past ``end`` (positions counted from ``base``) or with a bad value."""
    fields = {}
    unpack = _RTATTR.unpack_from
    while offset + 4 <= end:  # a plain loop, not a generator: this runs for every route of a full table
        length, kind = unpack(data, offset)
        if length < 4 or offset + length > end:
            raise Malformed(f"attribute {kind} at byte {offset - base}: length {length}, {end - offset} bytes left")
        known = table.get(kind & 0x3FFF)  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
        if known is not None:
            try:
                fields[known[0]] = known[1](family, data, offset + 4, offset + length)
            except Malformed as exc:
                raise Malformed(f"{known[0]} {data[offset + 4 : offset + length]!r} is no {exc}") from None
        offset += (length + 3) & ~3
    return fields


def _header(fixed: struct.Struct, data: bytes, start: int, end: int) -> tuple[Any, ...]:
    """The fixed header after nlmsghdr of message ``data[start:end]``."""
    if end - start - _NLMSGHDR.size < fixed.size:
        kind = _NLMSGHDR.unpack_from(data, start)[1]
        raise Malformed(f"{end - start} bytes, too short for a message of type {kind}")
    return fixed.unpack_from(data, start + _NLMSGHDR.size)


# -- messages --------------------------------------------------------------------------


def messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(type, flags, start, end)`` of each netlink message in a datagram."""
    offset, size = 0, len(data)
    while offset + _NLMSGHDR.size <= size:
        length, kind, flags, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > size:
            return
        yield kind, flags, offset, offset + length
        offset += (length + 3) & ~3


def route(data: bytes, start: int, end: int) -> KernelRoute | None:
    """Decode one RTM_NEWROUTE/RTM_DELROUTE message (``data[start:end]``).

    None for what routeflow ignores: another table or family, a tos, a cache
    clone, an IPv6 link-local or multicast prefix, or a malformed message
    (the kernel sends none; ignoring it beats acting on half of one).
    Route types are kept whatever they are: they still shadow worse routes.
    """
    body = start + _BODY  # the checks of _header() inline: this runs for every route of a full table
    if end - body < _RTMSG.size:
        return None
    family, dst_len, _, tos, table, proto, _, rtype, flags = _RTMSG.unpack_from(data, body)
    if family not in _WIDTH or tos != 0 or flags & RTM_F_CLONED:
        return None
    try:
        fields = _attributes(ROUTE_ATTRIBUTES, family, data, start, body + _RTMSG.size, end)
    except Malformed:
        return None
    if fields.get("RTA_TABLE", table) != RT_TABLE_MAIN:
        return None
    dst = fields.get("RTA_DST") or ANY_ADDRESS[family]
    if family == AF_INET6 and _ipv6_noise(dst, dst_len):
        return None
    hops = fields.get("RTA_MULTIPATH")
    if not hops:
        oif = fields.get("RTA_OIF")
        gateway = fields.get("RTA_GATEWAY") or fields.get("RTA_VIA")
        hops = [] if oif is None else [(KernelNextHop(oif, gateway, 1), bool(flags & RTNH_F_DEAD))]
    return KernelRoute(
        prefix=f"{dst}/{dst_len}",
        priority=fields.get("RTA_PRIORITY", 0),
        type=rtype,
        proto=proto,
        prefsrc=fields.get("RTA_PREFSRC"),
        nhid=fields.get("RTA_NH_ID", 0),
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
    try:
        family, _, _, _, flags = _header(_NHMSG, data, start, end)
        fields = _attributes(NEXTHOP_ATTRIBUTES, family, data, start, start + _BODY + _NHMSG.size, end)
    except Malformed:
        return None
    if "NHA_ID" not in fields or "NHA_FDB" in fields:
        return None
    return NexthopObject(
        id=fields["NHA_ID"],
        oif=fields.get("NHA_OIF", 0),
        gateway=fields.get("NHA_GATEWAY"),
        blackhole="NHA_BLACKHOLE" in fields,
        dead=bool(flags & RTNH_F_DEAD),
        group=fields.get("NHA_GROUP", ()),
    )


def link(data: bytes, start: int, end: int) -> Link | None:
    """Decode one RTM_NEWLINK/RTM_DELLINK message; None for per-family variants (e.g.
    AF_BRIDGE port info).

    Raises :class:`Malformed` for a name or operational state that is not text, and
    for a link without a name (the kernel names every link).
    """
    family, _, index, flags, _ = _header(_IFINFOMSG, data, start, end)
    if family != 0:
        return None
    fields = _attributes(LINK_ATTRIBUTES, family, data, start, start + _BODY + _IFINFOMSG.size, end)
    name = fields.get("IFLA_IFNAME")
    if not name:
        raise Malformed("a link without a name")
    return Link(index, name, fields.get("IFLA_ADDRESS", ""), flags, fields.get("IFLA_OPERSTATE", "UNKNOWN"))


def address(data: bytes, start: int, end: int) -> Address | None:
    """Decode one RTM_NEWADDR/RTM_DELADDR message; None for one without an address.

    Raises :class:`Malformed` for an address not of the message's family, a prefix
    length longer than the family's addresses, or IFA_FLAGS that are not a number.
    """
    family, prefixlen, ifa_flags, _, index = _header(_IFADDRMSG, data, start, end)
    if family not in FAMILIES:
        return None
    fields = _attributes(ADDRESS_ATTRIBUTES, family, data, start, start + _BODY + _IFADDRMSG.size, end)
    ip = fields.get("IFA_LOCAL") or fields.get("IFA_ADDRESS")
    if ip is None:
        return None
    if prefixlen > 8 * _WIDTH[family]:
        raise Malformed(f"prefix length {prefixlen} of {ip}")
    usable = not fields.get("IFA_FLAGS", ifa_flags) & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
    return Address(index, f"{ip}/{prefixlen}", usable)


def neighbour(data: bytes, start: int, end: int) -> NeighbourEntry | None:
    """Decode one RTM_NEWNEIGH/RTM_DELNEIGH message; None for proxy entries and one
    without NDA_DST.

    Raises :class:`Malformed` for an NDA_DST not of the message's family.
    """
    family, index, state, flags, _ = _header(_NDMSG, data, start, end)
    if family not in FAMILIES or flags & NTF_PROXY:
        return None
    fields = _attributes(NEIGHBOUR_ATTRIBUTES, family, data, start, start + _BODY + _NDMSG.size, end)
    ip = fields.get("NDA_DST")
    if ip is None:
        return None
    mac = fields.get("NDA_LLADDR", "")
    # Broadcast and multicast groups get NOARP entries too; they are not next hops.
    usable = state & NUD_RESOLVED and mac and not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00"
    return NeighbourEntry(index, ip, mac if usable else None)


# -- dumps -----------------------------------------------------------------------------

#: Bytes of each GET request's header after the netlink one (all start with a family byte).
_REQUEST_BODY = {RTM_GETLINK: _IFINFOMSG.size, RTM_GETNEXTHOP: _NHMSG.size}


def dump_request(request: int, family: int = socket.AF_UNSPEC) -> bytes:
    """The message asking for a dump of one table (``request``: an RTM_GET* type) of one family."""
    body = bytes([family]) + bytes(_REQUEST_BODY.get(request, 12) - 1)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), request, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body


def error_code(data: bytes, start: int, end: int) -> int:
    """The (negative) error code of an NLMSG_ERROR or NLMSG_DONE message; 0 for none."""
    return int(_ERROR.unpack_from(data, start + _NLMSGHDR.size)[0]) if end - start >= 20 else 0
