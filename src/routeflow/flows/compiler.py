"""The heart of routeflow: a pure function from a virtual router's state to the
flow table of the datapath it mirrors. No I/O, no clock, no randomness.

Given the VM's configuration (which NIC mirrors which switch port), what its
RF-Client reported (interfaces, FIB, neighbours) and the switch's port
states, :func:`compile_datapath` returns the complete desired :class:`Table`.
A datapath several VMs share holds the union of their tables, each in its own
:class:`RoutingContext`. The server diffs it against what the switch holds
(:mod:`routeflow.flows.diff`).
"""

from __future__ import annotations

import functools
import ipaddress
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, NamedTuple

from routeflow.config.schema import Config, RoutingPlane, VmConfig
from routeflow.flows import pipeline as P
from routeflow.model import (
    CONTROLLER,
    DEC_TTL,
    POP_VLAN,
    PUSH_VLAN,
    VID_PRESENT,
    Action,
    Fib,
    Flow,
    FlowKey,
    Group,
    Interface,
    Match,
    Neighbour,
    PortDesc,
    Route,
    Table,
    group,
    match,
    output,
    set_field,
)
from routeflow.protocol import lldp, mapping

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
IP_PROTO_OSPF = 89
#: Link-local multicast (OSPF, RIP, VRRP...) always belongs to the router.
LINK_LOCAL_MULTICAST_V4 = "224.0.0.0/24"
#: IPv6 link-scope multicast: neighbour and router discovery (solicited-node,
#: all-routers), OSPFv3 (ff02::5, ff02::6), MLD. Link-scope: never forwarded.
LINK_LOCAL_MULTICAST_V6 = "ff02::/16"


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


class RoutingContext(NamedTuple):
    """Where a VM's routes live on its datapath: its FIB table and, if other VMs share the
    datapath (multiplexing), that its admission and own-address flows name its ports."""

    fib_table: int = P.FIB.table_id
    shared: bool = False

    @property
    def group_seed(self) -> int:
        """Seeds the hash of group ids, so that two contexts' groups do not collide."""
        return self.fib_table - P.FIB.table_id


#: The routing context of a VM alone on its datapath (logical split).
SOLE = RoutingContext()


def routing_context(config: Config, vm: VmConfig) -> RoutingContext:
    """``vm``'s routing context on its datapath, as the config places it."""
    return RoutingContext(P.fib_table(config.context(vm)), config.shared(vm.dpid))


class Nic(NamedTuple):
    """A usable VM NIC on the switch: its port, its MAC (the router MAC there) and the
    VLAN it owns of the port (None: untagged)."""

    port: int
    mac: str
    vlan: int | None = None


class _Egress(NamedTuple):
    """Where and how a packet leaves: port, router MAC of that port, next-hop MAC, VLAN."""

    port: int
    src_mac: str
    dst_mac: str
    vlan: int | None = None


@functools.lru_cache(maxsize=65536)
def _rewrite(egress: _Egress) -> tuple[Action, ...]:
    """The actions sending a packet to one next hop. Memoised: a large FIB has
    few next hops, so thousands of flows share one tuple (time and memory)."""
    rewrite = (set_field("eth_src", egress.src_mac), set_field("eth_dst", egress.dst_mac), output(egress.port))
    if egress.vlan is None:
        return rewrite
    return (PUSH_VLAN, set_field("vlan_vid", egress.vlan | VID_PRESENT), *rewrite)


@functools.lru_cache(maxsize=65536)
def _forward(egress: _Egress) -> tuple[Action, ...]:
    """TTL decrement, then :func:`_rewrite`: a routed flow's whole action list."""
    return (DEC_TTL, *_rewrite(egress))


#: Shared first match field of every IPv4 and every IPv6 flow.
_IPV4: tuple[str, int] = ("eth_type", ETH_TYPE_IPV4)
_IPV6: tuple[str, int] = ("eth_type", ETH_TYPE_IPV6)
#: Per IP version: that first match field, the destination field and a host's prefix length.
_FAMILY: dict[int, tuple[tuple[str, int], str, int]] = {4: (_IPV4, "ipv4_dst", 32), 6: (_IPV6, "ipv6_dst", 128)}


def usable_nics(vm: VmConfig, interfaces: Mapping[str, Interface],
                ports: Mapping[int, PortDesc]) -> dict[str, Nic]:
    """NIC name -> :class:`Nic` for Ethernet NICs that are up on a port that is up."""
    usable: dict[str, Nic] = {}
    for nic in vm.interfaces:
        iface = interfaces.get(nic.name)
        desc = ports.get(nic.port)
        if iface is not None and iface.mac and desc is not None and desc.up and iface.up:
            usable[nic.name] = Nic(nic.port, iface.mac, nic.vlan)
    return usable


def compile_datapath(vm: VmConfig, fib: Fib, ports: Mapping[int, PortDesc], ctx: RoutingContext = SOLE) -> Compiled:
    """The desired flows and groups of the datapath that ``vm`` mirrors.

    The reference translation: :class:`~routeflow.flows.incremental.IncrementalCompiler`
    keeps the same result up to date change by change, and verify checks
    switches against this function (through :func:`datapath_flows`).
    """
    groups = GroupTable(ctx.group_seed)
    result = Compiled(Table())
    flows = {f.key: f for f in datapath_flows(vm, fib, ports, groups, result.unresolved, ctx)}
    result.table = Table(flows=flows, groups=groups.by_id())
    return result


def datapath_flows(vm: VmConfig, fib: Fib, ports: Mapping[int, PortDesc], groups: GroupTable,
                   unresolved: list[Unresolved], ctx: RoutingContext = SOLE) -> Iterator[Flow]:
    """:func:`compile_datapath` as a stream: its flows one by one (of two with the
    same key, the later wins), its groups in ``groups`` once the stream ends.

    Verify compares a million-route translation without holding it as a table.
    """
    interfaces = {i.ifname: i for i in fib.interfaces}
    usable = usable_nics(vm, interfaces, ports)
    yield from control_flows(vm, interfaces, usable, ctx)

    neighbours = {(n.ifname, n.ip): n.mac for n in fib.neighbours}
    host_routes: set[str] = set()
    for route in fib.routes:
        compiled = route_flow(route, usable, neighbours, groups, ctx.fib_table)
        if compiled is None:
            continue
        if compiled.host is not None:
            host_routes.add(compiled.host)
        unresolved += compiled.unresolved
        if compiled.flow is not None:
            yield compiled.flow

    by_ip: dict[str, list[Neighbour]] = {}
    for neigh in fib.neighbours:
        by_ip.setdefault(neigh.ip, []).append(neigh)
    for ip, candidates in by_ip.items():
        if ip not in host_routes:
            flow = neighbour_flow(candidates, usable, ctx.fib_table)
            if flow is not None:
                yield flow
    yield fib_miss(ctx.fib_table)


def compile_rfvs(config: Config, nics: Mapping[tuple[str, str], int], ports: Mapping[int, PortDesc],
                 wires: Iterable[tuple[int, int]] = ()) -> Table:
    """The RFVS table.

    ``nics`` maps (VM, interface) to the RFVS port its mapping packets came
    from; ``ports`` are the RFVS's ports, where trunks are found by name;
    ``wires`` are pairs of RFVS ports (VM NICs) joined like a cable: the
    virtual plane of a physical link between two switches. A VM NIC whose
    datapath has a trunk is cabled to it in both directions, its frames tagged
    with the switch port it mirrors. Everything else (mapping packets, NICs of
    datapaths without a trunk) goes to the controller, which reads mapping
    packets and relays the rest.
    """
    table = P.RFVS_TABLE
    flows = [
        Flow(table, P.PRIO_RFVS_RELAY, (), (CONTROLLER,)),
        Flow(table, P.PRIO_RFVS_MAPPING, match(eth_type=mapping.ETH_TYPE), (CONTROLLER,)),
    ]
    for a, b in wires:
        flows += [Flow(table, P.PRIO_RFVS_WIRE, match(in_port=a), (output(b),)),
                  Flow(table, P.PRIO_RFVS_WIRE, match(in_port=b), (output(a),))]
    by_name = {p.name: p.port_no for p in ports.values()}
    for vm in config.vms:
        trunk = by_name.get(vm.trunk.rfvs_port_name(vm.dpid)) if vm.trunk is not None else None
        if trunk is None:
            continue
        # Untagged or unknown tags from the switch are nobody's: never relay them.
        flows.append(Flow(table, P.PRIO_RFVS_TRUNK_DROP, match(in_port=trunk), ()))
        for nic in vm.interfaces:
            rfvs_port = nics.get((vm.name, nic.name))
            if rfvs_port is None or nic.vlan is not None:
                # Not identified yet: relayed until its mapping packet arrives. A VLAN
                # sub-interface's frames keep their own tag: the controller relays them.
                continue
            vid = nic.port | VID_PRESENT
            flows += [
                Flow(table, P.PRIO_RFVS_TRUNK, match(in_port=rfvs_port), _tag(vid, trunk)),
                Flow(table, P.PRIO_RFVS_TRUNK, match(in_port=trunk, vlan_vid=vid), (POP_VLAN, output(rfvs_port))),
            ]
    return Table(flows={f.key: f for f in flows})


def _tag(vid: int, port: int) -> tuple[Action, ...]:
    return (PUSH_VLAN, set_field("vlan_vid", vid), output(port))


def _to_vm(table: int, priority: int, flow_match: Match) -> Flow:
    """A flow handing its packets to the virtual router (see :data:`pipeline.SLOW_PATH`)."""
    return Flow(table, priority, flow_match, (), goto=P.SLOW_PATH.table_id)


def control_flows(vm: VmConfig, interfaces: Mapping[str, Interface],
                  usable: Mapping[str, Nic], ctx: RoutingContext = SOLE) -> list[Flow]:
    """``vm``'s part of the CONTROL and SLOW_PATH tables of its datapath.

    Routing-protocol and neighbour traffic goes to the slow path whoever's port it
    entered (the same flows for every VM sharing a datapath): the slow path delivers
    it by its ingress port (and VLAN) to the VM owning that. Admission to the FIB, and
    the router's own addresses on a shared datapath, are per port."""
    table = P.CONTROL.table_id
    flows = [
        _to_vm(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_ARP)),
        _to_vm(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_IPV4, ip_proto=IP_PROTO_OSPF)),
        _to_vm(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_IPV4, ipv4_dst=LINK_LOCAL_MULTICAST_V4)),
        _to_vm(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_IPV6, ip_proto=IP_PROTO_OSPF)),
        _to_vm(table, P.PRIO_SLOW_PATH, match(eth_type=ETH_TYPE_IPV6, ipv6_dst=LINK_LOCAL_MULTICAST_V6)),
    ]
    # Everything addressed to the router itself (ICMP echo, BGP, BFD, unicast
    # ND to its link-local addresses...) is for the VM.
    own = sorted({ipaddress.ip_interface(a).ip for iface in interfaces.values() for a in iface.addresses},
                 key=lambda ip: (ip.version, ip))
    own_matches = [_host_match(str(ip), ip.version) for ip in own if not ip.is_loopback]
    if ctx.shared:
        # Tenants may own the same addresses: each gets its own on its own ports only.
        own_matches = [(*_port_match(nic), *m) for nic in sorted(usable.values(), key=_nic_order) for m in own_matches]
    flows += [_to_vm(table, P.PRIO_SLOW_PATH, tuple(sorted(m))) for m in own_matches]
    flows += [_admit(nic, ctx.fib_table) for nic in sorted(usable.values(), key=_nic_order)]
    if vm.routing_plane == RoutingPlane.VIRTUAL:
        # Discovery probes from the controller, to find links to wire in the virtual plane.
        flows.append(Flow(table, P.PRIO_DISCOVERY, match(eth_type=lldp.ETH_TYPE), (CONTROLLER,)))
    return flows + slow_path_flows(vm, usable)


def _port_match(nic: Nic) -> Match:
    """The frames of ``nic``'s virtual port: its switch port and, if it has one, its VLAN."""
    if nic.vlan is None:
        return match(in_port=nic.port)
    return match(in_port=nic.port, vlan_vid=nic.vlan | VID_PRESENT)


def _admit(nic: Nic, fib_table: int) -> Flow:
    """Frames for the router's MAC on ``nic``'s virtual port go on to its FIB, untagged."""
    flow_match = tuple(sorted((*_port_match(nic), ("eth_dst", nic.mac))))
    if nic.vlan is None:
        return Flow(P.CONTROL.table_id, P.PRIO_ROUTER_MAC, flow_match, goto=fib_table)
    return Flow(P.CONTROL.table_id, P.PRIO_ROUTER_MAC, flow_match, (POP_VLAN,), goto=fib_table)


def slow_path_flows(vm: VmConfig, usable: Mapping[str, Nic]) -> list[Flow]:
    """How packets for the VM reach it: down the trunk, tagged with their ingress
    port, and back up untagged onto the port the tag names (for ports that are
    up, as everything else); or, with no trunk, through the controller. VLAN
    sub-interfaces take the controller, which relays a frame by port and tag."""
    to_controller = Flow(P.SLOW_PATH.table_id, P.PRIO_TO_CONTROLLER, (), (CONTROLLER,))
    if vm.trunk is None:
        return [to_controller]
    trunk = vm.trunk.port
    flows = [Flow(P.CONTROL.table_id, P.PRIO_TRUNK_DROP, match(in_port=trunk), ())]
    for nic in sorted(usable.values(), key=_nic_order):
        if nic.vlan is not None:
            flows.append(Flow(P.SLOW_PATH.table_id, P.PRIO_TO_TRUNK, _port_match(nic), (CONTROLLER,)))
            continue
        vid = nic.port | VID_PRESENT
        flows += [
            Flow(P.SLOW_PATH.table_id, P.PRIO_TO_TRUNK, match(in_port=nic.port), _tag(vid, trunk)),
            Flow(P.CONTROL.table_id, P.PRIO_TRUNK, match(in_port=trunk, vlan_vid=vid),
                 (POP_VLAN, output(nic.port))),
        ]
    return flows


def _nic_order(nic: Nic) -> tuple[int, int, str]:
    return (nic.port, nic.vlan or 0, nic.mac)


def fib_miss(fib_table: int) -> Flow:
    """A packet no route of the context matches goes to its virtual router."""
    return _to_vm(fib_table, P.PRIO_FIB_MISS, ())


@dataclass(frozen=True)
class RouteFlow:
    """A route's translation: its flow (None: none on this datapath), the
    ECMP buckets it uses, its unresolved next hops, and its address if it is a /32."""

    flow: Flow | None
    buckets: tuple[tuple[Action, ...], ...] | None = None
    unresolved: tuple[Unresolved, ...] = ()
    host: str | None = None


def route_flow(route: Route, usable: Mapping[str, Nic], neighbours: Mapping[tuple[str, str], str],
               groups: GroupTable, table: int = P.FIB.table_id) -> RouteFlow | None:
    """Translate one route into FIB table ``table``; None for a route this compiler
    ignores (not IP unicast).

    An ECMP route takes a reference on its group in ``groups``.
    """
    parsed = ip_prefix(route.prefix)
    if parsed is None:
        return None
    version, address, prefixlen, text = parsed
    eth_type, dst_field, host_len = _FAMILY[version]
    host = address if prefixlen == host_len else None
    # A /0 mask is no match field at all: switches drop it, so must we, or the
    # dumped flow would never equal the desired one. A host is an exact match.
    # Built directly rather than with match(): this runs once per route.
    flow_match: Match = (eth_type, (dst_field, address if host else text)) if prefixlen else (eth_type,)
    priority = P.fib_priority(prefixlen)
    if route.type == "blackhole":
        return RouteFlow(Flow(table, priority, flow_match, ()), host=host)
    if route.type != "unicast":  # unreachable, prohibit: the VM sends the ICMP error
        return RouteFlow(_to_vm(table, priority, flow_match), host=host)

    egresses: list[_Egress] = []
    unresolved: list[Unresolved] = []
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
        nic = usable[hop.ifname]
        egresses.append(_Egress(nic.port, nic.mac, mac, nic.vlan))
    if not reachable:
        return RouteFlow(None, host=host)
    if not egresses:
        # Connected subnet, or next hops not resolved yet: the VM resolves and forwards.
        return RouteFlow(_to_vm(table, priority, flow_match), None, tuple(unresolved), host)
    egresses = sorted(set(egresses))
    if len(egresses) == 1:
        return RouteFlow(Flow(table, priority, flow_match, _forward(egresses[0])), None,
                         tuple(unresolved), host)
    buckets = tuple(_rewrite(e) for e in egresses)
    grp = groups.acquire(buckets)
    return RouteFlow(Flow(table, priority, flow_match, (DEC_TTL, group(grp.group_id))), buckets,
                     tuple(unresolved), host)


def neighbour_flow(candidates: list[Neighbour], usable: Mapping[str, Nic],
                   table: int = P.FIB.table_id) -> Flow | None:
    """The connected-host flow for one IP address, from its neighbour entries.

    The same address on two NICs is ambiguous; the first NIC by name wins, so
    the result does not depend on the order entries arrived in.
    """
    for neigh in sorted(candidates):
        key = host_key(neigh.ip, table)
        if neigh.ifname in usable and key is not None:
            nic = usable[neigh.ifname]
            return Flow(key.table, key.priority, key.match, _forward(_Egress(nic.port, nic.mac, neigh.mac, nic.vlan)))
    return None


def host_key(ip: str, table: int = P.FIB.table_id) -> FlowKey | None:
    """The key of the connected-host flow for ``ip``; None if it has none: not an IP
    address, or an IPv6 link-local one (on-link only, never a destination to route to)."""
    parsed = ip_prefix(ip)
    if parsed is None:
        return None
    version, address, prefixlen, _ = parsed
    host_len = _FAMILY[version][2]
    if prefixlen != host_len or (version == 6 and ipaddress.IPv6Address(address).is_link_local):
        return None
    return FlowKey(table, P.fib_priority(host_len), _host_match(address, version))


def _host_match(ip: str, version: int) -> Match:
    """The exact match of one IPv4 or IPv6 destination address."""
    if version == 4:
        return match(eth_type=ETH_TYPE_IPV4, ipv4_dst=ip)
    return match(eth_type=ETH_TYPE_IPV6, ipv6_dst=ip)


class GroupTable:
    """ECMP select groups by bucket set, shared by every route using the same next hops.

    A group's id is a hash of its buckets (from ``seed``: each routing context of a
    datapath has its own), so it stays the same across recompilations and restarts;
    a collision probes the next free id. Routes acquire and release references; a
    group with none left disappears.
    """

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._groups: dict[tuple[tuple[Action, ...], ...], Group] = {}
        self._refs: dict[tuple[tuple[Action, ...], ...], int] = {}
        self._ids: set[int] = set()

    def acquire(self, buckets: tuple[tuple[Action, ...], ...]) -> Group:
        grp = self._groups.get(buckets)
        if grp is None:
            gid = zlib.crc32(repr(buckets).encode(), self._seed) & 0x7FFFFFFF or 1
            while gid in self._ids:
                gid = gid % 0x7FFFFFFF + 1
            grp = self._groups[buckets] = Group(gid, "select", buckets)
            self._ids.add(gid)
        self._refs[buckets] = self._refs.get(buckets, 0) + 1
        return grp

    def release(self, buckets: tuple[tuple[Action, ...], ...]) -> Group | None:
        """Drop one reference; return the group if that was the last one."""
        self._refs[buckets] -= 1
        if self._refs[buckets]:
            return None
        del self._refs[buckets]
        grp = self._groups.pop(buckets)
        self._ids.discard(grp.group_id)
        return grp

    def by_buckets(self, buckets: tuple[tuple[Action, ...], ...]) -> Group:
        return self._groups[buckets]

    def by_id(self) -> dict[int, Group]:
        return {g.group_id: g for g in self._groups.values()}


def ip_prefix(text: str) -> tuple[int, str, int, str] | None:
    """``(IP version, network address, prefix length, canonical prefix text)`` of an
    IPv4 or IPv6 unicast prefix or address; None for anything else."""
    parsed = ipv4_prefix(text)
    if parsed is not None:
        return (4, *parsed)
    parsed = ipv6_prefix(text)
    return None if parsed is None else (6, *parsed)


def ipv4_prefix(text: str) -> tuple[str, int, str] | None:
    """``(network address, prefix length, canonical prefix text)`` of an IPv4
    prefix or address; None if not IPv4.

    The hot path of large FIBs: canonical text (what the kernel reports) is
    checked with integer arithmetic; anything else is normalised by ``ipaddress``.
    """
    address, _, length = text.partition("/")
    octets = address.split(".")
    if len(octets) == 4 and all(o.isdigit() and len(o) <= 3 for o in octets) and (not length or length.isdigit()):
        prefixlen = int(length) if length else 32
        value = 0
        for octet in octets:
            value = value << 8 | int(octet)
        if value < 1 << 32 and prefixlen <= 32 and not value & ((1 << (32 - prefixlen)) - 1) \
                and all(o == "0" or not o.startswith("0") for o in octets):
            return address, prefixlen, text if length else f"{text}/32"
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return (str(net.network_address), net.prefixlen, str(net)) if net.version == 4 else None


@functools.lru_cache(maxsize=65536)
def ipv6_prefix(text: str) -> tuple[str, int, str] | None:
    """``(network address, prefix length, canonical prefix text)`` of an IPv6
    prefix or address; None if not IPv6 or not a unicast destination (multicast)."""
    try:
        net = ipaddress.IPv6Network(text, strict=False)
    except ValueError:
        return None
    if net.is_multicast:
        return None
    return str(net.network_address), net.prefixlen, str(net)
