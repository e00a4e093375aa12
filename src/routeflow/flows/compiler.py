"""The heart of routeflow: a pure function from a virtual router's state to the
flow table of the datapath it mirrors. No I/O, no clock, no randomness.

Given the VM's configuration (which NIC mirrors which switch port), what its
RF-Client reported (interfaces, FIB, neighbours) and the switch's port
states, :func:`compile_datapath` returns the complete desired :class:`Table`.
The server diffs it against what the switch holds (:mod:`routeflow.flows.diff`).
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field
from typing import Mapping

from routeflow.config.schema import VmConfig
from routeflow.flows import pipeline as P
from routeflow.flows.model import (
    CONTROLLER,
    DEC_TTL,
    Action,
    Flow,
    Group,
    Table,
    group,
    match,
    output,
    set_field,
)
from routeflow.model import Fib, Interface, PortDesc, Route

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
IP_PROTO_OSPF = 89
#: Link-local multicast (OSPF, RIP, VRRP...) always belongs to the router.
LINK_LOCAL_MULTICAST_V4 = "224.0.0.0/24"


@dataclass(frozen=True)
class Unresolved:
    """A next hop with no neighbour entry yet: its traffic goes to the VM."""

    prefix: str
    ifname: str
    gateway: str


@dataclass
class Compiled:
    table: Table
    unresolved: list[Unresolved] = field(default_factory=list)


@dataclass(frozen=True)
class _Egress:
    """Where and how a packet leaves: port, router MAC of that port, next-hop MAC."""

    port: int
    src_mac: str
    dst_mac: str

    def actions(self) -> tuple[Action, ...]:
        return (set_field("eth_src", self.src_mac), set_field("eth_dst", self.dst_mac), output(self.port))


def compile_datapath(vm: VmConfig, fib: Fib, ports: Mapping[int, PortDesc]) -> Compiled:
    """The desired flows and groups of the datapath that ``vm`` mirrors."""
    interfaces = {i.ifname: i for i in fib.interfaces}
    # NIC name -> (switch port, router MAC) for NICs whose port is present and up.
    usable: dict[str, tuple[int, str]] = {}
    for nic in vm.interfaces:
        iface = interfaces.get(nic.name)
        desc = ports.get(nic.port)
        if iface is not None and desc is not None and desc.up and iface.up:
            usable[nic.name] = (nic.port, iface.mac)

    flows: list[Flow] = list(_control_flows(vm, interfaces, usable))
    groups: dict[tuple[tuple[Action, ...], ...], Group] = {}
    result = Compiled(Table())

    neighbours = {(n.ifname, n.ip): n.mac for n in fib.neighbours}
    host_routes: set[str] = set()
    for route in fib.routes:
        net = _ipv4_network(route.prefix)
        if net is None:
            continue
        if net.prefixlen == 32:
            host_routes.add(str(net.network_address))
        flow = _route_flow(route, net, usable, neighbours, groups, result.unresolved)
        if flow is not None:
            flows.append(flow)

    for neigh in fib.neighbours:
        if neigh.ifname not in usable or neigh.ip in host_routes or _ipv4_network(neigh.ip) is None:
            continue
        port_no, src = usable[neigh.ifname]
        flows.append(
            Flow(
                P.FIB.table_id,
                P.fib_priority(32),
                match(eth_type=ETH_TYPE_IPV4, ipv4_dst=neigh.ip),
                (DEC_TTL, *_Egress(port_no, src, neigh.mac).actions()),
            )
        )
    flows.append(Flow(P.FIB.table_id, P.PRIO_FIB_MISS, (), (CONTROLLER,)))

    table = Table(
        flows={f.key: f for f in flows},
        groups={g.group_id: g for g in groups.values()},
    )
    result.table = table
    return result


def compile_rfvs() -> Table:
    """The RFVS table: every packet from a VM NIC goes to the controller, which
    relays it to the mirrored switch port or reads it as a mapping packet."""
    flow = Flow(P.RFVS_TABLE, 0, (), (CONTROLLER,))
    return Table(flows={flow.key: flow})


def _control_flows(vm: VmConfig, interfaces: Mapping[str, Interface],
                   usable: Mapping[str, tuple[int, str]]) -> list[Flow]:
    table = P.CONTROL.table_id
    to_vm = (CONTROLLER,)
    flows = [
        Flow(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_ARP), to_vm),
        Flow(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_IPV4, ip_proto=IP_PROTO_OSPF), to_vm),
        Flow(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_IPV4, ipv4_dst=LINK_LOCAL_MULTICAST_V4), to_vm),
    ]
    # Everything addressed to the router itself (ICMP echo, BGP, BFD...) is for the VM.
    own = sorted({
        str(ipaddress.ip_interface(a).ip)
        for iface in interfaces.values()
        for a in iface.addresses
        if _is_routable_v4(a)
    })
    flows += [Flow(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_IPV4, ipv4_dst=ip), to_vm) for ip in own]
    flows += [
        Flow(table, P.PRIO_ROUTER_MAC, match(in_port=port, eth_dst=mac), goto=P.FIB.table_id)
        for port, mac in sorted(usable.values())
    ]
    return flows


def _route_flow(route: Route, net: ipaddress.IPv4Network, usable: Mapping[str, tuple[int, str]],
                neighbours: Mapping[tuple[str, str], str],
                groups: dict[tuple[tuple[Action, ...], ...], Group],
                unresolved: list[Unresolved]) -> Flow | None:
    # A /0 mask is no match field at all: switches drop it, so must we, or the
    # dumped flow would never equal the desired one.
    flow_match = (match(eth_type=ETH_TYPE_IPV4, ipv4_dst=_prefix_text(net)) if net.prefixlen
                  else match(eth_type=ETH_TYPE_IPV4))
    priority = P.fib_priority(net.prefixlen)
    table = P.FIB.table_id
    if route.type == "blackhole":
        return Flow(table, priority, flow_match, ())
    if route.type != "unicast":  # unreachable, prohibit: the VM sends the ICMP error
        return Flow(table, priority, flow_match, (CONTROLLER,))

    egresses: list[_Egress] = []
    reachable = False
    for hop in route.nexthops:
        if hop.ifname not in usable:
            continue
        reachable = True
        if hop.gateway is None:
            continue  # connected: hosts come from the neighbour table
        mac = neighbours.get((hop.ifname, hop.gateway))
        if mac is None:
            unresolved.append(Unresolved(route.prefix, hop.ifname, hop.gateway))
            continue
        port, src = usable[hop.ifname]
        egresses.append(_Egress(port, src, mac))
    if not reachable:
        return None
    if not egresses:
        # Connected subnet, or next hops not resolved yet: the VM resolves and forwards.
        return Flow(table, priority, flow_match, (CONTROLLER,))
    egresses = sorted(set(egresses), key=lambda e: (e.port, e.dst_mac))
    if len(egresses) == 1:
        return Flow(table, priority, flow_match, (DEC_TTL, *egresses[0].actions()))
    grp = _ecmp_group(tuple(e.actions() for e in egresses), groups)
    return Flow(table, priority, flow_match, (DEC_TTL, group(grp.group_id)))


def _ecmp_group(buckets: tuple[tuple[Action, ...], ...],
                groups: dict[tuple[tuple[Action, ...], ...], Group]) -> Group:
    """The select group for this set of next hops, shared by every route using it.

    Its id is a hash of the buckets so it stays the same across recompilations
    and restarts; a collision probes the next id.
    """
    existing = groups.get(buckets)
    if existing is not None:
        return existing
    taken = {g.group_id for g in groups.values()}
    gid = zlib.crc32(repr(buckets).encode()) & 0x7FFFFFFF or 1
    while gid in taken:
        gid = gid % 0x7FFFFFFF + 1
    grp = Group(gid, "select", buckets)
    groups[buckets] = grp
    return grp


def _ipv4_network(text: str) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return net if net.version == 4 else None


def _is_routable_v4(address: str) -> bool:
    ip = ipaddress.ip_interface(address).ip
    return ip.version == 4 and not ip.is_loopback


def _prefix_text(net: ipaddress.IPv4Network) -> str:
    """Exact match for a host, prefix notation otherwise (the canonical match value)."""
    return str(net.network_address) if net.prefixlen == 32 else str(net)
