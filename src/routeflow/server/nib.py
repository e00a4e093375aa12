"""The network information base (NIB): everything the RF-Server knows.

Pure data with small, obviously-correct mutators; the decisions live in
:mod:`routeflow.server.core`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from routeflow.config.schema import Config, RoutingPlane
from routeflow.flows.compiler import Unresolved, compile_rfvs
from routeflow.model import Fib, Interface, Neighbour, NextHop, PortDesc, Route, Table
from routeflow.protocol.messages import FibAudit, FibDelta
from routeflow.server.admission import Admissions


@dataclass
class VmState:
    """What a VM's RF-Client has reported, kept as dicts for cheap deltas."""

    interfaces: dict[str, Interface] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    neighbours: dict[tuple[str, str], Neighbour] = field(default_factory=dict)
    #: True once a snapshot arrived: until then the server leaves the VM's
    #: datapath flows alone (after a server restart they are still valid).
    synced: bool = False
    connected: bool = False
    #: The client's last report of its FIB audits (None until one came).
    audit: FibAudit | None = None
    #: Next hops of its routes with no neighbour entry yet (their traffic goes to the VM).
    unresolved: list[Unresolved] = field(default_factory=list)

    def replace(self, fib: Fib) -> None:
        self.interfaces = {i.ifname: i for i in fib.interfaces}
        self.routes = {r.prefix: shared_route(r) for r in fib.routes}
        self.neighbours = {(n.ifname, n.ip): n for n in fib.neighbours}
        self.synced = True

    def apply(self, delta: FibDelta) -> None:
        for name in delta.interfaces_del:
            self.interfaces.pop(name, None)
        for iface in delta.interfaces_set:
            self.interfaces[iface.ifname] = iface
        for prefix in delta.routes_del:
            self.routes.pop(prefix, None)
        for route in delta.routes_set:
            self.routes[route.prefix] = shared_route(route)
        for key in delta.neighbours_del:
            self.neighbours.pop((key[0], key[1]), None)
        for neigh in delta.neighbours_set:
            self.neighbours[(neigh.ifname, neigh.ip)] = neigh

    def fib(self) -> Fib:
        return Fib(
            interfaces=tuple(self.interfaces.values()),
            routes=tuple(self.routes.values()),
            neighbours=tuple(self.neighbours.values()),
        )


@dataclass
class DatapathState:
    """A datapath the controller reported, and what we believe its table holds."""

    ports: dict[int, PortDesc] = field(default_factory=dict)
    #: The switch's table as last dumped plus the changes sent since; None
    #: until a dump arrives, and the server never diffs against a guess.
    installed: Table | None = None
    dump_pending: bool = False
    flow_mods: int = 0
    #: Why the last attempt to compute this datapath's table failed ("" if it did not):
    #: the switch keeps its last good table meanwhile.
    compile_error: str = ""


@dataclass
class Retry:
    """Resolution attempts for one unresolved next hop, and when the next is due
    (the event loop's clock)."""

    attempts: int
    next_at: float


@dataclass
class Nib:
    config: Config
    vms: dict[str, VmState] = field(default_factory=dict)
    datapaths: dict[int, DatapathState] = field(default_factory=dict)
    #: (vm, ifname) -> (rfvs dpid, rfvs port), learned from mapping packets.
    rfvs_ports: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    #: VM -> (ifname, gateway) -> resolution attempts of its unresolved next hops.
    resolving: dict[str, dict[tuple[str, str], Retry]] = field(default_factory=dict)
    #: Directed physical links found by discovery: ((dpid, port), (dpid, port)).
    links: set[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=set)
    controller_connected: bool = False
    #: What became of the switches no configured VM mirrors: VMs made from templates, rejects.
    admissions: Admissions = field(init=False)

    def __post_init__(self) -> None:
        for vm in self.config.vms:
            self.vms.setdefault(vm.name, VmState())
        self.admissions = Admissions(self.config.templates)

    def rfvs_nics(self) -> dict[tuple[str, str], int]:
        """(vm, ifname) -> port on the configured RFVS, for the NICs identified so far."""
        rfvs = self.config.rfvs.dpid
        return {key: port for key, (dpid, port) in self.rfvs_ports.items() if dpid == rfvs}

    def virtual_links(self) -> list[tuple[tuple[str, str], tuple[str, str]]]:
        """Physical links, seen in both directions, between ports mirrored by NICs of
        two ``virtual`` routing-plane VMs: ((vm, ifname), (vm, ifname)) pairs."""
        # A link carries each VLAN both its ends have a NIC for: one tenant's cable each.
        nics_of: dict[tuple[int, int], dict[int | None, tuple[str, str]]] = {}
        for vm in self.config.vms:
            if vm.routing_plane == RoutingPlane.VIRTUAL:
                for nic in vm.interfaces:
                    nics_of.setdefault((vm.dpid, nic.port), {})[nic.vlan] = (vm.name, nic.name)
        pairs = []
        for a, b in self.links:
            if a < b and (b, a) in self.links and a in nics_of and b in nics_of:
                pairs += [(nic, nics_of[b][vlan]) for vlan, nic in nics_of[a].items() if vlan in nics_of[b]]
        return sorted(pairs)

    def rfvs_table(self, ports: Mapping[int, PortDesc]) -> Table:
        """The RFVS's whole table, given its ports: the trunks and wires of the VM NICs
        identified and the links discovered so far."""
        nics = self.rfvs_nics()
        wires = [(nics[a], nics[b]) for a, b in self.virtual_links() if a in nics and b in nics]
        return compile_rfvs(self.config, nics, ports, wires)


@functools.lru_cache(maxsize=65536)
def _nexthops(nexthops: tuple[NextHop, ...]) -> tuple[NextHop, ...]:
    return nexthops


@functools.lru_cache(maxsize=1024)
def _proto(proto: str) -> str:
    return proto


def shared_route(route: Route) -> Route:
    """The route with its next-hop set and protocol name shared with other routes.

    A million routes typically use a handful of next-hop sets; decoded, each
    route would carry its own copies (about 250 bytes of a route's ~400).
    """
    return Route(route.prefix, _nexthops(route.nexthops), route.type, _proto(route.proto))
