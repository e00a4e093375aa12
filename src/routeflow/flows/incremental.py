"""Keep a datapath's desired table current change by change.

Recompiling a whole FIB for every batch of route changes costs O(routes) per
batch, O(routes^2) for a full table arriving in batches. The
:class:`IncrementalCompiler` translates only the routes and neighbours that
changed, plus the routes whose next hop is a changed neighbour, with the same
per-item functions as :func:`~routeflow.flows.compiler.compile_datapath`, so
the result is identical to a full compile (a property the unit tests check on
random change sequences). Anything that changes many flows at once (an
interface, a port, the router MACs) takes the full path, :meth:`rebuild`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from routeflow.config.schema import VmConfig
from routeflow.flows.compiler import (
    SOLE,
    GroupTable,
    Nic,
    RoutingContext,
    Unresolved,
    control_flows,
    fib_miss,
    host_key,
    neighbour_flow,
    route_flow,
    usable_nics,
)
from routeflow.model import Action, Flow, FlowKey, Group, Interface, Neighbour, NextHop, PortDesc, Route, Table

Buckets = tuple[tuple[Action, ...], ...]


@dataclass
class Changes:
    """What an update changed in the desired table: None marks a removal."""

    flows: dict[FlowKey, Flow | None] = field(default_factory=dict)
    groups: dict[int, Group | None] = field(default_factory=dict)


@dataclass(slots=True)
class _RouteState:
    key: FlowKey | None
    buckets: Buckets | None
    gateways: tuple[tuple[str, str], ...]
    host: str | None


class IncrementalCompiler:
    """The desired table of one VM on its datapath (the whole table in logical split,
    its routing context's part when VMs share the datapath), maintained under route
    and neighbour changes."""

    def __init__(self, vm: VmConfig, ctx: RoutingContext = SOLE) -> None:
        self.vm = vm
        self.ctx = ctx
        self.table = Table()
        self._usable: dict[str, Nic] = {}
        self._groups = GroupTable(ctx.group_seed)
        self._routes: dict[str, _RouteState] = {}
        #: (ifname, gateway) -> prefixes of routes using it as a next hop.
        self._by_gateway: dict[tuple[str, str], set[str]] = {}
        #: Unresolved next hops by prefix, only for routes that have some.
        self._unresolved: dict[str, tuple[Unresolved, ...]] = {}
        #: Addresses covered by a /32 route: their neighbour flow gives way.
        self._host_routes: dict[str, int] = {}
        #: Neighbour MAC by (ifname, ip), and the keys by ip.
        self._neighbours: dict[tuple[str, str], str] = {}
        self._neighbour_keys: dict[str, set[tuple[str, str]]] = {}

    @property
    def unresolved(self) -> list[Unresolved]:
        return [u for found in self._unresolved.values() for u in found]

    def rebuild(self, interfaces: Mapping[str, Interface], routes: Mapping[str, Route],
                neighbours: Mapping[tuple[str, str], Neighbour], ports: Mapping[int, PortDesc]) -> Table:
        """Compile everything from scratch (after a snapshot, a port or interface change)."""
        self._usable = usable_nics(self.vm, interfaces, ports)
        self._groups = GroupTable(self.ctx.group_seed)
        self._routes = {}
        self._unresolved = {}
        self._by_gateway = {}
        self._host_routes = {}
        self._neighbours = {k: n.mac for k, n in neighbours.items()}
        self._neighbour_keys = {}
        for key in neighbours:
            self._neighbour_keys.setdefault(key[1], set()).add(key)
        flows = {f.key: f for f in control_flows(self.vm, interfaces, self._usable, self.ctx)}
        miss = fib_miss(self.ctx.fib_table)
        flows[miss.key] = miss
        self.table = Table(flows=flows, groups={})
        changes = Changes()
        for prefix in routes:
            self._route(prefix, routes, changes)
        by_ip: dict[str, list[Neighbour]] = {}
        for neigh in neighbours.values():
            by_ip.setdefault(neigh.ip, []).append(neigh)
        for ip, candidates in by_ip.items():
            self._neighbour_ip(ip, candidates, changes)
        self._apply(changes)
        return self.table

    def update(self, routes: Mapping[str, Route], neighbours: Mapping[tuple[str, str], Neighbour],
               changed_routes: Iterable[str], changed_neighbours: Iterable[tuple[str, str]]) -> Changes:
        """Re-translate what the given route prefixes and neighbour keys affect.

        ``routes`` and ``neighbours`` are the VM's current state, already
        holding the changes; the result says what changed in :attr:`table`.
        """
        changes = Changes()
        affected_ips: set[str] = set()
        affected_routes = set(changed_routes)
        for key in changed_neighbours:
            neigh = neighbours.get(key)
            if neigh is None:
                self._neighbours.pop(key, None)
                keys = self._neighbour_keys.get(key[1])
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._neighbour_keys[key[1]]
            else:
                self._neighbours[key] = neigh.mac
                self._neighbour_keys.setdefault(key[1], set()).add(key)
            affected_routes |= self._by_gateway.get(key, set())
            affected_ips.add(key[1])
        for prefix in affected_routes:
            old_host = self._routes[prefix].host if prefix in self._routes else None
            new_host = self._route(prefix, routes, changes)
            affected_ips.update(ip for ip in (old_host, new_host) if ip is not None)
        for ip in affected_ips:
            candidates = [neighbours[k] for k in self._neighbour_keys.get(ip, ())]
            self._neighbour_ip(ip, candidates, changes)
        self._apply(changes)
        return changes

    # -- internals ---------------------------------------------------------------------

    def _route(self, prefix: str, routes: Mapping[str, Route], changes: Changes) -> str | None:
        """Withdraw the old translation of ``prefix`` and add the new one; return its /32 host."""
        old = self._routes.pop(prefix, None)
        self._unresolved.pop(prefix, None)
        if old is not None:
            if old.key is not None:
                changes.flows[old.key] = None
            if old.buckets is not None:
                gone = self._groups.release(old.buckets)
                if gone is not None:
                    changes.groups[gone.group_id] = None
            for gw in old.gateways:
                users = self._by_gateway[gw]
                users.discard(prefix)
                if not users:
                    del self._by_gateway[gw]
            if old.host is not None:
                self._host_routes[old.host] -= 1
                if not self._host_routes[old.host]:
                    del self._host_routes[old.host]
        route = routes.get(prefix)
        if route is None:
            return None
        compiled = route_flow(route, self._usable, self._neighbours, self._groups, self.ctx.fib_table)
        if compiled is None:
            return None
        gateways = _gateways(route.nexthops)
        key = compiled.flow.key if compiled.flow is not None else None
        self._routes[prefix] = _RouteState(key, compiled.buckets, gateways, compiled.host)
        if compiled.unresolved:
            self._unresolved[prefix] = compiled.unresolved
        for gw in gateways:
            self._by_gateway.setdefault(gw, set()).add(prefix)
        if compiled.host is not None:
            self._host_routes[compiled.host] = self._host_routes.get(compiled.host, 0) + 1
        if compiled.flow is not None and key is not None:
            changes.flows[key] = compiled.flow
        if compiled.buckets is not None:
            grp = self._groups.by_buckets(compiled.buckets)
            changes.groups[grp.group_id] = grp
        return compiled.host

    def _neighbour_ip(self, ip: str, candidates: list[Neighbour], changes: Changes) -> None:
        if ip in self._host_routes:
            return  # the /32 route's flow owns this key
        flow = neighbour_flow(candidates, self._usable, self.ctx.fib_table)
        if flow is not None:
            changes.flows[flow.key] = flow
            return
        key = host_key(ip, self.ctx.fib_table)
        if key is not None:
            changes.flows[key] = None  # no usable entry left for this address

    def _apply(self, changes: Changes) -> None:
        flows, groups = self.table.flows, self.table.groups
        for key, flow in changes.flows.items():
            if flow is None:
                flows.pop(key, None)
            else:
                flows[key] = flow
        for gid, grp in changes.groups.items():
            if grp is None:
                groups.pop(gid, None)
            else:
                groups[gid] = grp


@functools.lru_cache(maxsize=65536)
def _gateways(nexthops: tuple[NextHop, ...]) -> tuple[tuple[str, str], ...]:
    """The (ifname, gateway) pairs of a next-hop set; memoised, as few sets serve many routes."""
    return tuple((h.ifname, h.gateway) for h in nexthops if h.gateway is not None)
