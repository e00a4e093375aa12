"""The FIB state machine: the kernel's tables in, the model's FIB and its changes out.

The data path, dumps and events alike: the watcher
(:mod:`routeflow.client.watcher`) reads raw datagrams from its own rtnetlink
sockets, a dump of every table at start (and of next-hop objects and routes
again when they may have changed unannounced), the multicast event stream
after it, and hands each datagram to :meth:`FibState.apply_datagram`. That
splits it into messages and decodes each with :mod:`routeflow.client.netlink`
into a record (:class:`~routeflow.client.netlink.KernelRoute`,
:class:`~routeflow.client.netlink.NexthopObject`, ``Link``, ``Address``,
``NeighbourEntry``), which it applies to the kernel's tables it keeps: the
routes of each prefix in the kernel's order (:mod:`routeflow.client.aliases`),
next-hop objects, links, addresses, neighbours. Per batch,
:meth:`FibState.take_delta` reports only the model-level changes, as a
:class:`~routeflow.protocol.messages.FibDelta`; :meth:`FibState.fib` is the
snapshot they add up to. Pure: no socket, no clock.

Rules, for IPv4 and IPv6 alike unless said otherwise:

* Routes: main table only, tos 0, types unicast/blackhole/unreachable/prohibit,
  no cache clones (RTM_F_CLONED: PMTU and redirect exceptions). The FIB entry
  of a prefix is its first live route of lowest metric, exactly as the
  kernel's lookup picks it. Dead multipath legs are dropped.
* Next-hop objects (``ip nexthop``, what FRR installs routes through): a
  route with an ``nhid`` forwards as its object says now, a single next hop,
  a blackhole or a weighted group, whatever the route message spelled out
  when it was added; an object replaced or a group whose members change
  changes every route using it, and an object deleted takes every route
  using it along, as in the kernel, which announces neither.
* IPv6: the legs of equal metric with a gateway form one ECMP route, its next
  hops reported sorted (their kernel order depends on history). Not
  forwarding state, so skipped: link-local ``fe80::/10`` and multicast
  ``ff00::/8`` prefixes (the kernel's per-interface ``fe80::/64`` and
  ``ff00::/8``), and the connected routes of addresses on the loopback
  (``::1/128``, router-id /128s), which IPv4 keeps in the local table.
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

The kernel changes routes and next-hop objects without telling anyone when a
link goes down or up, loses its carrier, is deleted, or loses an address
(IPv4 routes flushed, next-hop objects on the link removed, multipath legs
marked dead or alive again). After such an event :attr:`FibState.routes_stale`
is set and the watcher must hand a fresh dump of next-hop objects and routes
to :meth:`FibState.resync`.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from routeflow.client import aliases, netlink
from routeflow.client.netlink import (
    IFF_LOWER_UP,
    IFF_UP,
    ROUTE_TYPES,
    RTPROT_KERNEL,
    Address,
    KernelNextHop,
    KernelRoute,
    Link,
    Malformed,
    NeighbourEntry,
    NexthopObject,
    proto_name,
)
from routeflow.model import Fib, Interface, Neighbour, NextHop, Route
from routeflow.protocol.messages import FibDelta

log = logging.getLogger("routeflow.client")

#: What a route forwards through: next hops with their dead flags, and whether it is a blackhole.
Resolved = tuple[tuple[KernelNextHop, ...], tuple[bool, ...], bool]


@functools.lru_cache(maxsize=65536)
def _nexthops(hops: tuple[NextHop, ...]) -> tuple[NextHop, ...]:
    """One copy of each next-hop set (a million routes typically share a handful)."""
    return hops


def _address_key(address: str) -> tuple[int, int, int]:
    iface = ipaddress.ip_interface(address)
    return iface.version, int(iface.ip), iface.network.prefixlen


# -- the state -----------------------------------------------------------------------

K = TypeVar("K")
V = TypeVar("V")


class FibState:
    """The kernel tables of one virtual router and what has been reported of them.

    Feed it datagrams with :meth:`apply_datagram` (dumps and events alike), then
    :meth:`take_delta` returns the model-level changes since the last call.
    :meth:`fib` is the reported state, consistent with the deltas handed out.
    """

    def __init__(self) -> None:
        # Raw kernel state.
        self._links: dict[int, Link] = {}
        self._addresses: dict[int, dict[str, None]] = {}  # ordered sets per ifindex
        self._routes: dict[str, list[KernelRoute]] = {}
        self._neighbours: dict[tuple[int, str], str] = {}
        self._objects: dict[int, NexthopObject] = {}
        #: Prefixes that have had a route through each next-hop object (a superset: cleared lazily).
        self._users: dict[int, set[str]] = {}
        #: What each object forwards through, worked out once per change of the objects.
        self._resolved: dict[int, Resolved | None] = {}
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
    def load(cls, datagrams: list[bytes]) -> FibState:
        """A state loaded from dump datagrams (links first), with everything reported.

        Empties ``datagrams`` as it goes: a million routes are some 60 MB of them.
        """
        state = cls()
        datagrams.reverse()
        while datagrams:
            state.apply_datagram(datagrams.pop())
        state.routes_stale = False  # the dump's own routes are the fresh read
        state.take_delta()
        return state

    # -- input ---------------------------------------------------------------------

    def apply_datagram(self, data: bytes) -> None:
        """Apply every message of a netlink datagram (dump or event); unknown,
        unsupported and malformed ones are ignored (a malformed link, address or
        neighbour message with a warning that says why)."""
        for kind, flags, start, end in netlink.messages(data):
            handling = _HANDLING.get(kind)
            if handling is None:
                continue
            decode, apply, new = handling
            try:
                record = decode(data, start, end)
            except Malformed as exc:
                log.warning("rtnetlink message of type %d ignored: %s", kind, exc)
                continue
            if record is not None:
                apply(self, record, new, flags)

    def resync(self, datagrams: Iterable[bytes]) -> None:
        """Replace the next-hop objects and routes with a fresh dump of both
        (objects first), after :attr:`routes_stale` or to audit the state."""
        fresh = FibState()
        for data in datagrams:
            for kind, _, start, end in netlink.messages(data):
                if kind == netlink.RTM_NEWNEXTHOP:
                    obj = netlink.nexthop(data, start, end)
                    if obj is not None:
                        fresh._objects[obj.id] = obj
                elif kind == netlink.RTM_NEWROUTE:
                    decoded = netlink.route(data, start, end)
                    if decoded is not None:  # dumps come in kernel order
                        fresh._routes.setdefault(decoded.prefix, []).extend(aliases.kernel_routes(decoded))
                        if decoded.nhid:
                            fresh._users.setdefault(decoded.nhid, set()).add(decoded.prefix)
        if fresh._objects != self._objects:
            self._objects_changed()  # what routes resolve to may differ: recompute them all
            self._dirty_routes.update(self._routes)
        for prefix in fresh._routes.keys() | self._routes.keys():
            if fresh._routes.get(prefix) != self._routes.get(prefix):
                self._dirty_routes.add(prefix)
        self._routes, self._objects, self._users = fresh._routes, fresh._objects, fresh._users
        self.routes_stale = False

    def _apply_route(self, route: KernelRoute, new: bool, flags: int) -> None:
        """Apply an RTM_NEWROUTE (``new``) or RTM_DELROUTE."""
        routes = self._routes.setdefault(route.prefix, [])
        aliases.apply(routes, route, new, flags)
        if not routes:
            del self._routes[route.prefix]
        if new and route.nhid:
            self._users.setdefault(route.nhid, set()).add(route.prefix)
        self._dirty_routes.add(route.prefix)

    def _apply_nexthop(self, obj: NexthopObject, new: bool, _: int) -> None:
        """Apply an RTM_NEWNEXTHOP (``new``: added or replaced) or RTM_DELNEXTHOP."""
        if new:
            self._objects[obj.id] = obj
            self._objects_changed(obj.id)
        else:
            self._remove_object(obj.id)

    def _remove_object(self, nhid: int) -> None:
        """Remove an object as the kernel does: out of every group (a group left
        empty goes too), and every route through it with it."""
        self._objects.pop(nhid, None)
        self._objects_changed(nhid)
        for group in [o for o in self._objects.values() if any(m == nhid for m, _ in o.group)]:
            members = tuple(m for m in group.group if m[0] != nhid)
            if members:
                self._objects[group.id] = group._replace(group=members)
            else:
                self._remove_object(group.id)
        for prefix in self._users.pop(nhid, ()):
            routes = self._routes.get(prefix)
            if routes is None:
                continue
            routes[:] = [alias for alias in routes if alias.nhid != nhid]
            if not routes:
                del self._routes[prefix]

    def _objects_changed(self, nhid: int | None = None) -> None:
        """Forget what objects resolve to, and mark the routes through ``nhid``
        (and the groups holding it) for recomputation."""
        self._resolved.clear()
        if nhid is None:
            return
        self._dirty_routes.update(self._users.get(nhid, ()))
        for group in self._objects.values():
            if any(m == nhid for m, _ in group.group):
                self._dirty_routes.update(self._users.get(group.id, ()))

    def _apply_neighbour(self, entry: NeighbourEntry, new: bool, _: int) -> None:
        key = (entry.ifindex, entry.ip)
        if new and entry.mac is not None:
            self._neighbours[key] = entry.mac
        else:  # deleted, or no longer resolved (FAILED, INCOMPLETE)
            self._neighbours.pop(key, None)
        self._dirty_neighbours.add(key)

    def _apply_address(self, address: Address, new: bool, _: int) -> None:
        addresses = self._addresses.setdefault(address.ifindex, {})
        if new and address.usable and ":" not in address.address and address.address not in addresses:
            self.routes_stale = True  # dead IPv4 multipath legs through its subnet revive, silently
        if new and address.usable:
            addresses[address.address] = None
        else:  # deleted, or (IPv6) not or no longer the router's: tentative, DAD failed
            addresses.pop(address.address, None)
        if not new:
            self.routes_stale = True  # routes using it as source are flushed, not always told
        self._links_dirty = True

    def _apply_link(self, link: Link, new: bool, _: int) -> None:
        if not new:
            self._remove_link(link.ifindex)
            return
        old = self._links.get(link.ifindex)
        if old is not None and old.ifname != link.ifname:
            self._names_changed = True
            self._dirty_routes.update(self._routes)  # next hops name their interface
        if old is not None and ((old.flags ^ link.flags) & (IFF_UP | IFF_LOWER_UP) or old.operstate != link.operstate):
            # Routes flushed, multipath legs revived, next-hop objects removed: silently.
            self.routes_stale = True
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
            if not link.loopback and link.mac
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

    def _forwarding(self, route: KernelRoute) -> Resolved:
        """What ``route`` forwards through: its object's next hops when it has a
        known one, else the next hops its message spelled out."""
        if route.nhid:
            resolved = self._resolve(route.nhid)
            if resolved is not None:
                return resolved
        return route.nexthops, route.dead, False

    def _resolve(self, nhid: int) -> Resolved | None:
        if nhid in self._resolved:
            return self._resolved[nhid]
        obj = self._objects.get(nhid)
        resolved: Resolved | None = None
        if obj is not None and obj.group:
            members = [(self._objects.get(m), weight) for m, weight in obj.group]
            live = [(member, weight) for member, weight in members if member is not None and not member.group]
            if live and all(member.blackhole for member, _ in live):
                resolved = (), (), True
            else:
                hops = [(KernelNextHop(m.oif, m.gateway, w), m.dead) for m, w in live if not m.blackhole]
                resolved = tuple(h for h, _ in hops), tuple(d for _, d in hops), False
        elif obj is not None:
            single = () if obj.blackhole else (KernelNextHop(obj.oif, obj.gateway, 1),)
            resolved = single, (obj.dead,) * len(single), obj.blackhole
        self._resolved[nhid] = resolved
        return resolved

    def _route(self, prefix: str) -> Route | None:
        if ":" in prefix:
            return self._route6(prefix)
        for alias in self._routes.get(prefix, ()):  # kernel order: metric, then age
            nexthops, dead, blackhole = self._forwarding(alias)
            live = [hop for hop, down in zip(nexthops, dead, strict=True) if not down]
            if nexthops and not live:
                continue  # the kernel's lookup skips dead routes
            kind = "blackhole" if blackhole else ROUTE_TYPES.get(alias.type)
            if kind is None:
                return None  # e.g. a throw route: this prefix does not forward
            hops = _nexthops(tuple(NextHop(self._ifname(hop.oif), hop.gateway) for hop in live))
            return Route(prefix, hops if kind == "unicast" else (), kind, proto_name(alias.proto))
        return None

    def _route6(self, prefix: str) -> Route | None:
        live = []  # (leg, its live next hops, blackhole), legs in kernel order: metric first
        for leg in self._routes.get(prefix, ()):
            nexthops, dead, blackhole = self._forwarding(leg)
            hops = tuple(hop for hop, down in zip(nexthops, dead, strict=True) if not down)
            if hops or not nexthops:
                live.append((leg, hops, blackhole))
        if not live:
            return None
        best, best_hops, blackhole = live[0]
        kind = "blackhole" if blackhole else ROUTE_TYPES.get(best.type)
        if kind is None:
            return None
        if kind != "unicast":
            return Route(prefix, (), kind, proto_name(best.proto))
        if aliases.ecmp_capable(best):
            chosen = [hop for leg, hops, _ in live if leg.priority == best.priority and aliases.ecmp_capable(leg) for hop in hops]
        else:
            chosen = list(best_hops)
        if best.proto == RTPROT_KERNEL and all(self._is_loopback(hop.oif) for hop in chosen):
            return None  # the prefix route of an address on lo: the router's own, not forwarded
        ordered = sorted(NextHop(self._ifname(hop.oif), hop.gateway) for hop in chosen)
        return Route(prefix, _nexthops(tuple(ordered)), kind, proto_name(best.proto))

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


#: Per message type: its decoder, the method applying what it decodes, and whether it adds
#: (RTM_NEW*: a new or replaced object) or removes (RTM_DEL*).
_HANDLING: dict[int, tuple[Callable[[bytes, int, int], Any], Callable[[FibState, Any, bool, int], None], bool]] = {
    netlink.RTM_NEWROUTE: (netlink.route, FibState._apply_route, True),
    netlink.RTM_DELROUTE: (netlink.route, FibState._apply_route, False),
    netlink.RTM_NEWNEXTHOP: (netlink.nexthop, FibState._apply_nexthop, True),
    netlink.RTM_DELNEXTHOP: (netlink.nexthop, FibState._apply_nexthop, False),
    netlink.RTM_NEWLINK: (netlink.link, FibState._apply_link, True),
    netlink.RTM_DELLINK: (netlink.link, FibState._apply_link, False),
    netlink.RTM_NEWADDR: (netlink.address, FibState._apply_address, True),
    netlink.RTM_DELADDR: (netlink.address, FibState._apply_address, False),
    netlink.RTM_NEWNEIGH: (netlink.neighbour, FibState._apply_neighbour, True),
    netlink.RTM_DELNEIGH: (netlink.neighbour, FibState._apply_neighbour, False),
}


def _diff_dicts(old: dict[K, V], new: dict[K, V]) -> tuple[list[V], list[K]]:
    """Values set and keys deleted going from ``old`` to ``new``."""
    changed = [value for key, value in new.items() if old.get(key) != value]
    return changed, [key for key in old if key not in new]
