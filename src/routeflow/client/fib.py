"""Netlink messages to routeflow model values, and the FIB state they build.

Pure: no socket, no clock. The watcher feeds :class:`FibState` the pyroute2
messages of a dump and then of the event stream; the state keeps the kernel's
raw tables and reports, per batch, only the model-level changes as a
:class:`~routeflow.protocol.messages.FibDelta`.

Rules, for IPv4 and IPv6 alike unless said otherwise:

* Routes: main table only, tos 0, types unicast/blackhole/unreachable/prohibit,
  no cache clones (RTM_F_CLONED: PMTU and redirect exceptions). The kernel may
  hold several routes per prefix (different metrics, or ``ip route
  append``); the FIB entry is the first live one of lowest metric, exactly as
  the kernel's lookup picks it. Dead multipath legs are dropped.
* IPv6 routes are kept as the kernel keeps them: one route per next hop
  ("leg"), legs of equal metric that have a gateway forming one ECMP route.
  Messages show them either as one route with RTA_MULTIPATH (a multipath add,
  an append: the whole group) or, with older semantics, as one message per
  leg with NLM_F_APPEND; a delete names the legs it removes. Either way the
  legs are merged here, and the ECMP next hops reported sorted (their kernel
  order depends on history). Not forwarding state, so skipped: link-local
  ``fe80::/10`` and multicast ``ff00::/8`` prefixes (the kernel's per-interface
  ``fe80::/64`` and ``ff00::/8``), and the connected routes of addresses on the
  loopback (``::1/128``, router-id /128s), which IPv4 keeps in the local table.
* Neighbours: resolved entries (REACHABLE, STALE, DELAY, PROBE, PERMANENT,
  NOARP) with a unicast Ethernet address; proxy entries are skipped, IPv6
  router entries (NTF_ROUTER) are ordinary neighbours.
* Interfaces: every link but the loopback, which appears only when it holds
  addresses that are not loopback addresses (router-id loopbacks). IPv6
  addresses include link-local ones (see :class:`~routeflow.model.Interface`);
  addresses still in duplicate address detection (tentative) or that failed
  it are not the router's yet.
* Addresses are canonical ``ipaddress`` text (the kernel's ``inet_ntop`` writes
  ``::ffff:1.2.3.4`` where ``ipaddress`` writes ``::ffff:102:304``).

The kernel changes routes without telling anyone when a link goes down or
up, is deleted, or loses an address (routes flushed, multipath legs marked
dead or alive again). After such an event :attr:`FibState.routes_stale` is set
and the watcher must hand a fresh route dump (both families) to
:meth:`FibState.replace_routes`.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from socket import AF_INET, AF_INET6
from typing import Any, NamedTuple, TypeVar

from pyroute2.netlink import NLM_F_APPEND, NLM_F_REPLACE
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
)

from routeflow.model import Fib, Interface, Neighbour, NextHop, Route, RouteType
from routeflow.protocol.messages import FibDelta

#: A pyroute2 netlink message (``pyroute2.netlink.nlmsg``); untyped upstream.
NetlinkMessage = Any

#: Address families handled.
FAMILIES = frozenset({AF_INET, AF_INET6})

RT_TABLE_MAIN = 254
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000
RTNH_F_DEAD = 0x1
#: rtm_flags of a cache clone (an IPv6 exception route), not a FIB entry.
RTM_F_CLONED = 0x200
RTPROT_KERNEL = 2
NTF_PROXY = 0x8
#: ifa_flags of IPv6 addresses the router does not own (yet).
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
#: NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT.
NUD_RESOLVED = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80

ROUTE_TYPES: dict[int, RouteType] = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}

#: ``/etc/iproute2/rt_protos`` plus the numbers FRR registers for its daemons.
PROTO_NAMES = {
    0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
    10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
    17: "mrouted", 18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis",
    188: "ospf", 189: "rip", 190: "ripng", 191: "nhrp", 192: "eigrp", 193: "ldp",
    194: "sharp", 195: "pbr", 196: "static", 197: "openfabric",
}  # fmt: skip

#: The all-zeros destination of each family (a default route has no RTA_DST).
ANY_ADDRESS = {AF_INET: "0.0.0.0", AF_INET6: "::"}


# -- pure conversions: one netlink message to one raw record -----------------------


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
    nexthops: tuple[KernelNextHop, ...]
    #: Per next hop: marked dead by the kernel (its link is down). Not part of
    #: the route's identity, since the kernel flips it without notice.
    dead: tuple[bool, ...]

    @property
    def identity(self) -> tuple[object, ...]:
        return self[:6]


class NeighbourEntry(NamedTuple):
    """A neighbour entry; ``mac`` is None when it cannot be used for forwarding."""

    ifindex: int
    ip: str
    mac: str | None


def _attrs(msg: NetlinkMessage) -> dict[str, Any]:
    # One pass: pyroute2 decodes attributes lazily and get_attr() scans them every time.
    return dict(msg["attrs"])


def parse_link(msg: NetlinkMessage) -> Link | None:
    """A link message; None for per-family variants (e.g. AF_BRIDGE port info)."""
    if msg["family"] != 0:
        return None
    attrs = _attrs(msg)
    mac = attrs.get("IFLA_ADDRESS") or ""
    operstate = attrs.get("IFLA_OPERSTATE") or "UNKNOWN"
    return Link(msg["index"], attrs.get("IFLA_IFNAME") or "", mac.lower(), msg["flags"], operstate)


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


def parse_address(msg: NetlinkMessage) -> Address | None:
    """An address message; None for unsupported families."""
    if msg["family"] not in FAMILIES:
        return None
    attrs = _attrs(msg)
    # IFA_LOCAL is our end of a point-to-point link; IFA_ADDRESS is then the peer.
    local = attrs.get("IFA_LOCAL") or attrs.get("IFA_ADDRESS")
    if local is None:
        return None
    flags = attrs.get("IFA_FLAGS", msg["flags"])  # IFA_FLAGS: all 32 bits, ifa_flags the low 8
    usable = not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
    return Address(msg["index"], f"{canonical_ip(local)}/{msg['prefixlen']}", usable)


def _gateway(attrs: dict[str, Any]) -> str | None:
    gateway: str | None = attrs.get("RTA_GATEWAY")
    if gateway is None:
        via = attrs.get("RTA_VIA")  # IPv4 over an IPv6 next hop (RFC 5549)
        gateway = via["addr"] if via else None
    return canonical_ip(gateway) if gateway is not None else None


def parse_route(msg: NetlinkMessage) -> KernelRoute | None:
    """A route message; None unless it is a tos-0 route of the main table of a
    supported family, not a cache clone nor IPv6 link-local or multicast
    (other types are kept: they still shadow worse routes)."""
    family = msg["family"]
    if family not in FAMILIES or msg["tos"] != 0 or msg["flags"] & RTM_F_CLONED:
        return None
    attrs = _attrs(msg)
    if (attrs.get("RTA_TABLE") or msg["table"]) != RT_TABLE_MAIN:
        return None
    dst = canonical_ip(attrs.get("RTA_DST") or ANY_ADDRESS[family])
    if family == AF_INET6 and ipv6_noise(dst, msg["dst_len"]):
        return None
    multipath = attrs.get("RTA_MULTIPATH")
    if multipath:
        hops = [
            (
                KernelNextHop(leg["oif"], _gateway(_attrs(leg)), leg["hops"] + 1),
                bool(leg["flags"] & RTNH_F_DEAD),
            )
            for leg in multipath
        ]
    elif attrs.get("RTA_OIF") is not None:
        hops = [(KernelNextHop(attrs["RTA_OIF"], _gateway(attrs), 1), bool(msg["flags"] & RTNH_F_DEAD))]
    else:
        hops = []
    return KernelRoute(
        prefix=f"{dst}/{msg['dst_len']}",
        priority=attrs.get("RTA_PRIORITY") or 0,
        type=msg["type"],
        proto=msg["proto"],
        prefsrc=canonical_ip(attrs["RTA_PREFSRC"]) if attrs.get("RTA_PREFSRC") else None,
        nexthops=tuple(hop for hop, _ in hops),
        dead=tuple(dead for _, dead in hops),
    )


def _unicast_ethernet(mac: str) -> bool:
    # Broadcast and multicast groups get NOARP entries too; they are not next hops.
    return len(mac) == 17 and not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00"


def parse_neighbour(msg: NetlinkMessage) -> NeighbourEntry | None:
    """A neighbour message; None for unsupported families and proxy entries."""
    if msg["family"] not in FAMILIES or msg["flags"] & NTF_PROXY:
        return None
    attrs = _attrs(msg)
    ip = attrs.get("NDA_DST")
    if ip is None:
        return None
    mac = (attrs.get("NDA_LLADDR") or "").lower()
    usable = msg["state"] & NUD_RESOLVED and _unicast_ethernet(mac)
    return NeighbourEntry(msg["ifindex"], canonical_ip(ip), mac if usable else None)


@functools.lru_cache(maxsize=65536)
def _nexthops(hops: tuple[NextHop, ...]) -> tuple[NextHop, ...]:
    """One copy of each next-hop set (a million routes typically share a handful)."""
    return hops


def proto_name(proto: int) -> str:
    """``ospf`` for 188 and so on; the number itself when unknown."""
    return PROTO_NAMES.get(proto, str(proto))


def _address_key(address: str) -> tuple[int, int, int]:
    iface = ipaddress.ip_interface(address)
    return iface.version, int(iface.ip), iface.network.prefixlen


def _insert_alias(aliases: list[KernelRoute], route: KernelRoute, flags: int) -> None:
    """Apply RTM_NEWROUTE to the aliases of one prefix like ``fib_table_insert``.

    Idempotent, so that events already reflected in a dump can be replayed."""
    if any(alias.identity == route.identity for alias in aliases):
        aliases[:] = [route if alias.identity == route.identity else alias for alias in aliases]
        return
    same = [i for i, alias in enumerate(aliases) if alias.priority == route.priority]
    if flags & NLM_F_REPLACE and same:
        aliases[same[0]] = route
    elif flags & NLM_F_APPEND and same:
        aliases.insert(same[-1] + 1, route)
    else:  # a new alias goes first among equals, and the list stays sorted by metric
        pos = same[0] if same else sum(1 for alias in aliases if alias.priority < route.priority)
        aliases.insert(pos, route)


def _is_ipv6(route: KernelRoute) -> bool:
    return ":" in route.prefix


def _legs(route: KernelRoute) -> list[KernelRoute]:
    """An IPv6 route message as the kernel's routes: one per next hop."""
    if len(route.nexthops) <= 1:
        return [route]
    legs = zip(route.nexthops, route.dead, strict=True)
    return [route._replace(nexthops=(hop,), dead=(dead,)) for hop, dead in legs]


def _leg_key(leg: KernelRoute) -> tuple[object, ...]:
    # What makes two IPv6 routes of a prefix the same for the kernel (rt6_duplicate_nexthop).
    hop = leg.nexthops[0] if leg.nexthops else None
    return leg.priority, hop.oif if hop else None, hop.gateway if hop else None


def _ecmp_capable(leg: KernelRoute) -> bool:
    """Only IPv6 routes with a gateway join ECMP groups (rt6_qualify_for_ecmp)."""
    return bool(leg.nexthops) and leg.nexthops[0].gateway is not None


def _insert_legs(aliases: list[KernelRoute], route: KernelRoute, flags: int) -> None:
    """Apply an IPv6 RTM_NEWROUTE to the legs of one prefix like ``fib6_add_rt2node``.

    A known leg is refreshed in place, so the whole group an append reports,
    or a replayed event, changes nothing more."""
    legs = _legs(route)
    if flags & NLM_F_REPLACE:
        # Replacing takes out the route of that metric and kind, with all its ECMP siblings.
        ecmp = _ecmp_capable(legs[0])
        aliases[:] = [a for a in aliases if a.priority != route.priority or _ecmp_capable(a) != ecmp]
    for n, leg in enumerate(legs):
        key = _leg_key(leg)
        index = next((i for i, alias in enumerate(aliases) if _leg_key(alias) == key), None)
        if index is not None:
            # A group message has the protocol of its first leg (the route notified):
            # the other legs keep their own.
            aliases[index] = leg if n == 0 else aliases[index]._replace(nexthops=leg.nexthops, dead=leg.dead)
        else:  # siblings and equal-metric routes go last among equals
            aliases.insert(sum(1 for alias in aliases if alias.priority <= leg.priority), leg)


# -- the state -----------------------------------------------------------------------

K = TypeVar("K")
V = TypeVar("V")


class FibState:
    """The kernel tables of one virtual router and what has been reported of them.

    Feed it messages with :meth:`apply` (dump entries and events alike), then
    :meth:`take_delta` returns the model-level changes since the last call.
    :meth:`fib` is the reported state, consistent with the deltas handed out.
    """

    def __init__(self) -> None:
        # Raw kernel state.
        self._links: dict[int, Link] = {}
        self._addresses: dict[int, dict[str, None]] = {}  # ordered sets per ifindex
        self._routes: dict[str, list[KernelRoute]] = {}
        self._neighbours: dict[tuple[int, str], str] = {}
        # What has been reported, keyed like the protocol keys it.
        self._interfaces_out: dict[str, Interface] = {}
        self._routes_out: dict[str, Route] = {}
        self._neighbours_out: dict[tuple[str, str], Neighbour] = {}
        # Pending work for the next take_delta().
        self._links_dirty = False
        self._dirty_routes: set[str] = set()
        self._dirty_neighbours: set[tuple[int, str]] = set()
        #: Link names changed: neighbour keys must be recomputed.
        self._names_changed = False
        #: The kernel may have changed routes without notice: see the module docstring.
        self.routes_stale = False

    @classmethod
    def from_dump(cls, messages: Iterable[NetlinkMessage]) -> FibState:
        """A state loaded from a full dump (links first), with everything reported."""
        state = cls()
        for msg in messages:
            state.apply(msg)
        state.take_delta()
        return state

    # -- input ---------------------------------------------------------------------

    def apply(self, msg: NetlinkMessage) -> None:
        """Apply one netlink message; unknown and unsupported ones are ignored."""
        kind = msg["header"]["type"]
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            route = parse_route(msg)
            if route is not None:
                self.apply_route(route, kind == RTM_NEWROUTE, msg["header"]["flags"])
        elif kind in (RTM_NEWNEIGH, RTM_DELNEIGH):
            entry = parse_neighbour(msg)
            if entry is not None:
                self._apply_neighbour(entry, kind == RTM_NEWNEIGH)
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            address = parse_address(msg)
            if address is not None:
                self._apply_address(address, kind == RTM_NEWADDR)
        elif kind == RTM_NEWLINK:
            link = parse_link(msg)
            if link is not None:
                self._apply_link(link)
        elif kind == RTM_DELLINK:
            link = parse_link(msg)
            if link is not None:
                self._remove_link(link.ifindex)

    def replace_routes(self, messages: Iterable[NetlinkMessage]) -> None:
        """Replace the route table with a fresh dump (after :attr:`routes_stale`)."""
        self.replace_kernel_routes(route for route in map(parse_route, messages) if route is not None)

    def replace_kernel_routes(self, routes: Iterable[KernelRoute]) -> None:
        """Replace the route table with freshly dumped, decoded routes."""
        fresh: dict[str, list[KernelRoute]] = {}
        for route in routes:  # dumps come in kernel order
            if _is_ipv6(route):
                fresh.setdefault(route.prefix, []).extend(_legs(route))
            else:
                fresh.setdefault(route.prefix, []).append(route)
        for prefix in fresh.keys() | self._routes.keys():
            if fresh.get(prefix) != self._routes.get(prefix):
                self._dirty_routes.add(prefix)
        self._routes = fresh
        self.routes_stale = False

    def apply_route(self, route: KernelRoute, new: bool, flags: int) -> None:
        """Apply an already decoded RTM_NEWROUTE (``new``) or RTM_DELROUTE."""
        aliases = self._routes.setdefault(route.prefix, [])
        if _is_ipv6(route):
            if new:
                _insert_legs(aliases, route, flags)
            else:  # a delete names the legs it removes (one, or the whole group)
                gone = {_leg_key(leg) for leg in _legs(route)}
                aliases[:] = [alias for alias in aliases if _leg_key(alias) not in gone]
        elif new:
            _insert_alias(aliases, route, flags)
        else:
            aliases[:] = [alias for alias in aliases if alias.identity != route.identity]
        if not aliases:
            del self._routes[route.prefix]
        self._dirty_routes.add(route.prefix)

    def _apply_neighbour(self, entry: NeighbourEntry, new: bool) -> None:
        key = (entry.ifindex, entry.ip)
        if new and entry.mac is not None:
            self._neighbours[key] = entry.mac
        else:  # deleted, or no longer resolved (FAILED, INCOMPLETE)
            self._neighbours.pop(key, None)
        self._dirty_neighbours.add(key)

    def _apply_address(self, address: Address, new: bool) -> None:
        addresses = self._addresses.setdefault(address.ifindex, {})
        if new and address.usable:
            addresses[address.address] = None
        else:  # deleted, or (IPv6) not or no longer the router's: tentative, DAD failed
            addresses.pop(address.address, None)
        if not new:
            self.routes_stale = True  # routes using it as source are flushed, not always told
        self._links_dirty = True

    def _apply_link(self, link: Link) -> None:
        old = self._links.get(link.ifindex)
        if old is not None and old.ifname != link.ifname:
            self._names_changed = True
            self._dirty_routes.update(self._routes)  # next hops name their interface
        if old is not None and (old.flags ^ link.flags) & IFF_UP:
            self.routes_stale = True  # routes flushed, or multipath legs revived, silently
        self._links[link.ifindex] = link
        self._links_dirty = True

    def _remove_link(self, index: int) -> None:
        self._links.pop(index, None)
        self._addresses.pop(index, None)
        for key in [key for key in self._neighbours if key[0] == index]:
            del self._neighbours[key]
        self._names_changed = True  # its neighbours' keys can no longer be named
        self._links_dirty = True
        self.routes_stale = True

    # -- output --------------------------------------------------------------------

    def take_delta(self) -> FibDelta | None:
        """The model changes since the last call (None if nothing changed)."""
        interfaces_set, interfaces_del = self._diff_interfaces()
        routes_set, routes_del = self._diff_routes()
        neighbours_set, neighbours_del = self._diff_neighbours()
        self._links_dirty = False
        self._dirty_routes.clear()
        self._dirty_neighbours.clear()
        self._names_changed = False
        delta = FibDelta(
            interfaces_set=tuple(sorted(interfaces_set)),
            interfaces_del=tuple(sorted(interfaces_del)),
            routes_set=tuple(sorted(routes_set)),
            routes_del=tuple(sorted(routes_del)),
            neighbours_set=tuple(sorted(neighbours_set)),
            neighbours_del=tuple(sorted(neighbours_del)),
        )
        return delta if delta != FibDelta() else None

    def fib(self) -> Fib:
        """Everything reported so far (call :meth:`take_delta` first to include all)."""
        return Fib(
            interfaces=tuple(sorted(self._interfaces_out.values())),
            routes=tuple(sorted(self._routes_out.values())),
            neighbours=tuple(sorted(self._neighbours_out.values())),
        )

    def nics(self) -> dict[str, str]:
        """MAC address by name of every Ethernet link but the loopback."""
        return {
            link.ifname: link.mac
            for link in self._links.values()
            if not link.loopback and len(link.mac) == 17
        }

    def _ifname(self, index: int) -> str:
        link = self._links.get(index)
        return link.ifname if link is not None else f"if{index}"

    def _interface(self, index: int) -> Interface | None:
        link = self._links.get(index)
        if link is None:
            return None
        addresses = self._addresses.get(index, {})
        if link.loopback:
            addresses = {a: None for a in addresses if not ipaddress.ip_interface(a).ip.is_loopback}
            if not addresses:
                return None
        ordered = tuple(sorted(addresses, key=_address_key))
        return Interface(link.ifname, link.mac, link.up, ordered)

    def _route(self, prefix: str) -> Route | None:
        if ":" in prefix:
            return self._route6(prefix)
        for alias in self._routes.get(prefix, ()):  # kernel order: metric, then age
            live = [hop for hop, dead in zip(alias.nexthops, alias.dead, strict=True) if not dead]
            if alias.nexthops and not live:
                continue  # the kernel's lookup skips dead routes
            kind = ROUTE_TYPES.get(alias.type)
            if kind is None:
                return None  # e.g. a throw route: this prefix does not forward
            hops = _nexthops(tuple(NextHop(self._ifname(hop.oif), hop.gateway) for hop in live))
            return Route(prefix, hops if kind == "unicast" else (), kind, proto_name(alias.proto))
        return None

    def _route6(self, prefix: str) -> Route | None:
        live = [leg for leg in self._routes.get(prefix, ()) if not any(leg.dead)]
        if not live:
            return None
        best = live[0]  # legs are in kernel order: metric first
        kind = ROUTE_TYPES.get(best.type)
        if kind is None:
            return None
        if kind != "unicast":
            return Route(prefix, (), kind, proto_name(best.proto))
        if _ecmp_capable(best):
            legs = [leg for leg in live if leg.priority == best.priority and _ecmp_capable(leg)]
        else:
            legs = [best]
        oifs = {hop.oif for leg in legs for hop in leg.nexthops}
        if best.proto == RTPROT_KERNEL and all(self._is_loopback(oif) for oif in oifs):
            return None  # the prefix route of an address on lo: the router's own, not forwarded
        hops = sorted(NextHop(self._ifname(hop.oif), hop.gateway) for leg in legs for hop in leg.nexthops)
        return Route(prefix, _nexthops(tuple(hops)), kind, proto_name(best.proto))

    def _is_loopback(self, index: int) -> bool:
        link = self._links.get(index)
        return link is not None and link.loopback

    def _diff_interfaces(self) -> tuple[list[Interface], list[str]]:
        if not self._links_dirty:
            return [], []
        # A router has few interfaces: recomputing them all keeps renames simple.
        fresh = {}
        for index in self._links:
            interface = self._interface(index)
            if interface is not None:
                fresh[interface.ifname] = interface
        changed, gone = _diff_dicts(self._interfaces_out, fresh)
        self._interfaces_out = fresh
        return changed, gone

    def _diff_routes(self) -> tuple[list[Route], list[str]]:
        changed: list[Route] = []
        gone: list[str] = []
        for prefix in self._dirty_routes:
            new = self._route(prefix)
            if new is None:
                if self._routes_out.pop(prefix, None) is not None:
                    gone.append(prefix)
            elif self._routes_out.get(prefix) != new:
                self._routes_out[prefix] = new
                changed.append(new)
        return changed, gone

    def _diff_neighbours(self) -> tuple[list[Neighbour], list[tuple[str, str]]]:
        if self._names_changed:  # model keys themselves changed: compare everything
            fresh = {
                (self._ifname(index), ip): Neighbour(self._ifname(index), ip, mac)
                for (index, ip), mac in self._neighbours.items()
            }
            changed, gone = _diff_dicts(self._neighbours_out, fresh)
            self._neighbours_out = fresh
            return changed, gone
        changed_n: list[Neighbour] = []
        gone_n: list[tuple[str, str]] = []
        for index, ip in self._dirty_neighbours:
            key = (self._ifname(index), ip)
            mac = self._neighbours.get((index, ip))
            if mac is None:
                if self._neighbours_out.pop(key, None) is not None:
                    gone_n.append(key)
            else:
                new = Neighbour(key[0], ip, mac)
                if self._neighbours_out.get(key) != new:
                    self._neighbours_out[key] = new
                    changed_n.append(new)
        return changed_n, gone_n


def _diff_dicts(old: dict[K, V], new: dict[K, V]) -> tuple[list[V], list[K]]:
    """Values set and keys deleted going from ``old`` to ``new``."""
    changed = [value for key, value in new.items() if old.get(key) != value]
    return changed, [key for key in old if key not in new]
