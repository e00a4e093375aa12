"""Core value types of routeflow, shared by every component.

They are immutable msgspec structs, so the same objects travel in RF-protocol
messages, live in the server's NIB and feed the pure flow compiler.

Addresses are kept as canonical strings (``ipaddress`` normal form): they are
hashable, cheap to encode and compare equal exactly when the addresses do.
"""

from __future__ import annotations

from typing import Literal

import msgspec

#: Route types the FIB can hold that matter to forwarding (rtnetlink RTN_*).
RouteType = Literal["unicast", "blackhole", "unreachable", "prohibit"]


class Interface(msgspec.Struct, frozen=True, order=True):
    """A network interface of a virtual router (VM NIC or loopback).

    ``addresses`` are every address the router owns on the interface, IPv4
    first, each family in numeric order, as canonical ``ipaddress`` text with
    the prefix length: ``("172.31.1.1/24", "2001:db8:1::1/64",
    "fe80::a8c1:abff:fe01:203/64")``. IPv6 link-local addresses are included,
    in the same form and without a zone (the interface is the zone): the
    router answers neighbour discovery and ICMPv6 for them, and routing
    protocols (OSPFv3, BGP over link-local) use them as next hops, so the
    flow compiler needs them; ``ipaddress.ip_interface(a).is_link_local``
    tells them apart. Addresses still in duplicate address detection are
    left out until it completes.
    """

    ifname: str
    mac: str
    up: bool
    #: Addresses with prefix length, e.g. ``"172.31.1.1/24"``, ``"fe80::1/64"``.
    addresses: tuple[str, ...] = ()


class NextHop(msgspec.Struct, frozen=True, order=True):
    """One next hop of a route: an interface and, unless connected, a gateway.

    An IPv6 gateway is often link-local (``fe80::1``): it is only meaningful
    on ``ifname``, and its neighbour entry is keyed ``(ifname, "fe80::1")``."""

    ifname: str
    gateway: str | None = None


class Route(msgspec.Struct, frozen=True, order=True):
    """A FIB entry of a virtual router: the best route to one prefix."""

    prefix: str
    nexthops: tuple[NextHop, ...] = ()
    type: RouteType = "unicast"
    #: The routing protocol that installed it (``ospf``, ``bgp``, ``kernel``...).
    proto: str = ""


class Neighbour(msgspec.Struct, frozen=True, order=True):
    """A resolved neighbour (ARP/ND entry): IP address to MAC on one interface."""

    ifname: str
    ip: str
    mac: str


class Fib(msgspec.Struct, frozen=True):
    """Everything a virtual router tells the server: its interfaces, FIB and neighbours."""

    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()


class PortDesc(msgspec.Struct, frozen=True, order=True):
    """A port of an OpenFlow datapath as the switch describes it."""

    port_no: int
    name: str
    mac: str
    #: Link up and not administratively down.
    up: bool
