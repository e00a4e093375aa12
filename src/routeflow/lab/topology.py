"""The emulated physical network as a pure graph: switches, hosts, legacy routers and links.

A topology file (see ``examples/rftest2/topology.yaml``)::

    controller: tcp:127.0.0.1:6653        # default for every switch
    switches:
      - {name: sA, dpid: 0x1}
      - {name: sB, dpid: 0x2, trunk: 100}   # port 100: the data-plane slow path to the RFVS
      - {name: sC, dpid: 0x3, joined: false}  # joins later: `routeflow lab switch sC join`
    hosts:
      - {name: h1, addresses: [172.31.1.100/24, "2001:db8:1::100/64"],
         gateway: 172.31.1.1, gateway6: "2001:db8:1::1"}     # gateways optional
      - {name: h2, tenant: red, addresses: [10.1.1.100/24]}  # reaches red's hosts only
    routers:                              # legacy routers: routeflow does not control them
      - name: L1
        engine: frr                       # or bird
        daemons: [ospfd]                  # frr only
        loopback: [10.255.0.9/32]         # optional
        interfaces:
          - {name: eth1, addresses: [10.0.100.9/24]}
        engine_config: |
          router ospf
           network 10.0.0.0/8 area 0
    links:
      - {name: A-h1, ends: [sA:1, h1]}    # name is optional
      - {ends: ["sB:6", "L1:eth1"]}

An endpoint is ``SWITCH:PORT`` (an OpenFlow port number), ``ROUTER:NIC`` (an
interface of a legacy router) or a host name: a host is a namespace with a
single NIC, ``eth0``. A switch port becomes the veth ``SWITCH-pPORT`` in the
root namespace, so that name must fit Linux's 15 characters. A legacy router
is a namespace with one NIC per link and its own routing engine (FRR or
BIRD, run like a VM's, see :mod:`routeflow.vnet.engine`). Every link has a
switch port or a router NIC at one end at least. A switch's ``trunk`` port is
cabled to the RFVS (an OVS patch port, see
:func:`routeflow.config.schema.trunk_patch_names`), for a VM configured with
the same trunk port. Nothing here touches the system;
:mod:`routeflow.lab.network` builds it.

The file is read by :func:`routeflow.config.safe_yaml.read_yaml`, as a routeflow
config is, and every name handed to a command (a switch is an Open vSwitch bridge,
a host or router a network namespace, a router NIC an interface) and every
controller target (``tcp:IP[:PORT]``, ``ssl:IP[:PORT]``, ``unix:PATH`` and the
passive ``ptcp:``, ``pssl:``, ``punix:`` forms) is checked against its grammar
by :class:`routeflow.config.fields.Fields`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from routeflow.config.fields import Fields, Problems, check_unique, parse_interface_address
from routeflow.config.loader import parse_engine
from routeflow.config.safe_yaml import clip, read_yaml, shown
from routeflow.config.schema import Engine
from routeflow.vnet.links import IFNAME_MAX, IfAddress, IpAddress

DEFAULT_CONTROLLER = "tcp:127.0.0.1:6653"
#: Highest port number Open vSwitch accepts in ``ofport_request``.
MAX_PORT = 65279
#: Routing engines a legacy router can run.
ROUTER_ENGINES = (Engine.FRR, Engine.BIRD)
_IFNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Most digits read as an endpoint's port number (more is out of range, and slow to convert).
_PORT_DIGITS = 10


@dataclass(frozen=True)
class Switch:
    """An OpenFlow switch (an Open vSwitch bridge)."""

    name: str
    dpid: int
    #: Its controller targets (two: a controller pair); none for a baseline switch whose flows
    #: are added by hand (not in topology files).
    controller: tuple[str, ...] = (DEFAULT_CONTROLLER,)
    #: The port cabled to the RFVS for the data-plane slow path (None: no trunk).
    trunk: int | None = None
    #: Connected to its controllers when the lab comes up; False: built, but it joins
    #: the network only when told (``routeflow lab switch NAME join``): a switch appearing.
    joined: bool = True

    def port_ifname(self, port: int) -> str:
        """The name of the veth end that is this switch's port ``port``."""
        return port_ifname(self.name, port)


@dataclass(frozen=True)
class Host:
    """An end host: a namespace with one NIC, ``eth0``."""

    ifname: ClassVar[str] = "eth0"

    name: str
    addresses: tuple[IfAddress, ...]
    #: Default gateways, one per family (a host has one default route each): ``gateway``
    #: for IPv4, ``gateway6`` for IPv6, which may be the router's link-local address.
    gateway: ipaddress.IPv4Address | None = None
    gateway6: ipaddress.IPv6Address | None = None
    #: The tenant the host belongs to, where several share the switches: hosts reach the
    #: hosts of their own tenant only (None: everybody's host, reaching every other).
    tenant: str | None = None

    @property
    def gateways(self) -> tuple[IpAddress, ...]:
        return tuple(g for g in (self.gateway, self.gateway6) if g is not None)


@dataclass(frozen=True)
class RouterInterface:
    """A legacy router's NIC: its name in the router and its addresses."""

    name: str
    addresses: tuple[IfAddress, ...] = ()


@dataclass(frozen=True)
class Router:
    """A legacy router: a namespace with one NIC per link, running its own routing engine."""

    name: str
    engine: str
    interfaces: tuple[RouterInterface, ...]
    daemons: tuple[str, ...] = ()
    #: The engine's configuration text (frr.conf or bird.conf syntax).
    engine_config: str = ""
    loopback: tuple[IfAddress, ...] = ()

    def interface(self, name: str) -> RouterInterface | None:
        return next((i for i in self.interfaces if i.name == name), None)


@dataclass(frozen=True)
class Endpoint:
    """One end of a link: a switch port, a router NIC (``ifname``), or a host (neither)."""

    node: str
    port: int | None = None
    ifname: str | None = None

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``"s1:3"``, ``"R1:eth1"`` or ``"h1"``; raise ValueError if malformed."""
        node, sep, rest = text.partition(":")
        # ASCII digits only: str.isdigit() takes any script's digits, and superscripts int() refuses.
        port = rest.isascii() and rest.isdigit()
        if not node or (sep and not (port or _IFNAME.fullmatch(rest))):
            raise ValueError(f"{shown(text)} is not SWITCH:PORT, ROUTER:NIC or HOST")
        if port and len(rest) > _PORT_DIGITS:
            raise ValueError(f"port {shown(rest)} is out of range (1 to {MAX_PORT})")
        if not sep:
            return cls(node)
        return cls(node, int(rest)) if port else cls(node, ifname=rest)

    @property
    def is_host(self) -> bool:
        return self.port is None and self.ifname is None

    @property
    def is_switch(self) -> bool:
        return self.port is not None

    def __str__(self) -> str:
        if self.port is not None:
            return f"{self.node}:{self.port}"
        return self.node if self.ifname is None else f"{self.node}:{self.ifname}"


#: What ``routeflow lab link`` can make of a link: pass traffic; lose carrier at both
#: ends; or keep carrier and port state up while dropping every frame (a silent failure,
#: which only protocol timers and link discovery notice; switch ports at both ends only).
LINK_STATES = ("up", "down", "silent")
#: What can happen to a switch of a running lab: it joins the network (connects to its
#: controllers) or leaves it (disconnects; its links stay).
SWITCH_STATES = ("join", "leave")


@dataclass(frozen=True)
class Link:
    """A cable between two endpoints."""

    name: str
    a: Endpoint
    b: Endpoint

    @property
    def ends(self) -> tuple[Endpoint, Endpoint]:
        return (self.a, self.b)


@dataclass(frozen=True)
class Topology:
    """Switches, hosts, legacy routers and the links between them; ``source`` is the file it came from."""

    switches: tuple[Switch, ...]
    hosts: tuple[Host, ...]
    links: tuple[Link, ...]
    source: str = ""
    routers: tuple[Router, ...] = ()

    def switch(self, name: str) -> Switch | None:
        return next((s for s in self.switches if s.name == name), None)

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)

    def router(self, name: str) -> Router | None:
        return next((r for r in self.routers if r.name == name), None)

    def interface(self, end: Endpoint) -> tuple[str | None, str]:
        """Where an endpoint's veth end lives: ``(namespace or None for root, ifname)``."""
        if end.port is not None:
            return (None, port_ifname(end.node, end.port))
        return (end.node, end.ifname or Host.ifname)

    def find_link(self, spec: str) -> Link:
        """The link named ``spec``, or the one with endpoint ``spec`` (``s1:3``, ``h1``)."""
        for link in self.links:
            if link.name == spec:
                return link
        try:
            end = Endpoint.parse(spec)
        except ValueError:
            end = None
        for link in self.links:
            if end in link.ends:
                return link
        raise KeyError(f"no link named {shown(spec)} or with endpoint {shown(spec)}")

    def ports(self, switch: str) -> dict[int, Link]:
        """The used ports of ``switch`` and their links, by port number."""
        return {e.port: link for link in self.links for e in link.ends
                if e.node == switch and e.port is not None}

    def links_of(self, node: str) -> list[Link]:
        return [link for link in self.links if node in (link.a.node, link.b.node)]

    def neighbours(self, node: str) -> set[str]:
        """Nodes one link away from ``node``."""
        return {e.node for link in self.links_of(node) for e in link.ends if e.node != node}

    def attachment(self, host: str) -> Endpoint | None:
        """The switch port (or router NIC) ``host`` is cabled to."""
        for link in self.links_of(host):
            return link.b if link.a.node == host else link.a
        return None


def port_ifname(switch: str, port: int) -> str:
    return f"{switch}-p{port}"


def load_topology(path: str | Path) -> Topology:
    """Read ``path``; raise :class:`~routeflow.errors.ConfigError` listing every problem."""
    document = read_yaml(path)
    return parse_topology(document.value, str(path), document.problems)


def parse_topology(document: object, source: str = "<topology>",
                   reading: Sequence[tuple[str, str]] = ()) -> Topology:
    """Validate a parsed YAML document; raise ConfigError naming ``source`` and each field.

    ``reading``: the problems found reading the file (see :func:`~routeflow.config.safe_yaml.read_yaml`)."""
    problems = Problems(source, reading)
    top = Fields(document, "", problems)
    default_controller = top.controller("controller", (DEFAULT_CONTROLLER,))
    switches = [_parse_switch(f, default_controller) for f in top.items("switches")]
    hosts = [_parse_host(f) for f in top.items("hosts", [])]
    routers = [_parse_router(f) for f in top.items("routers", [])]
    nodes: dict[str, Switch | Host | Router] = (
        {s.name: s for s in switches if s.name} | {h.name: h for h in hosts if h.name}
        | {r.name: r for r in routers if r.name})
    # (index in the file, link) of the valid links: errors name the file's index.
    links = [(i, link) for i, link in enumerate(_parse_link(f, nodes) for f in top.items("links", []))
             if link is not None]
    top.finish()
    if "switches" in top.data and not switches and isinstance(top.data["switches"], list):
        problems.add("switches", "must list at least one switch")

    check_unique(problems, "", "node name", [(f"switches[{i}].name", s.name) for i, s in enumerate(switches)]
                 + [(f"hosts[{i}].name", h.name) for i, h in enumerate(hosts)]
                 + [(f"routers[{i}].name", r.name) for i, r in enumerate(routers)])
    check_unique(problems, "", "datapath id", [(f"switches[{i}].dpid", s.dpid) for i, s in enumerate(switches)])
    check_unique(problems, "", "link name", [(f"links[{i}].name", link.name) for i, link in links])
    check_unique(problems, "", "endpoint (each port, router NIC and host takes one link)",
                 [(f"links[{i}].ends[{j}]", str(e)) for i, link in links for j, e in enumerate(link.ends)])
    trunks = {s.name: s.trunk for s in switches if s.trunk is not None}
    for i, link in links:
        for j, e in enumerate(link.ends):
            if e.port is not None and trunks.get(e.node) == e.port:
                problems.add(f"links[{i}].ends[{j}]", f"port {e.port} of {e.node} is its trunk to the RFVS")
    linked = {e.node for _, link in links for e in link.ends}
    for i, host in enumerate(hosts):
        if host.name and host.name not in linked:
            problems.add(f"hosts[{i}].name", f"host {shown(host.name)} is not connected by any link")
    used = {(e.node, e.ifname) for _, link in links for e in link.ends if e.ifname is not None}
    for i, router in enumerate(routers):
        for j, iface in enumerate(router.interfaces):
            if router.name and iface.name not in (None, "lo") and (router.name, iface.name) not in used:
                problems.add(f"routers[{i}].interfaces[{j}].name",
                             f"{router.name}:{iface.name} is not connected by any link")
    problems.raise_if_any()
    return Topology(tuple(switches), tuple(hosts), tuple(link for _, link in links), source, tuple(routers))


def _parse_switch(f: Fields, default_controller: tuple[str, ...]) -> Switch:
    name = f.name("name", max_len=IFNAME_MAX)
    dpid = f.dpid("dpid")
    controller = f.controller("controller", default_controller)
    trunk = f.integer("trunk", None, lo=1, hi=0xFFFFFF00)
    joined = f.flag("joined", True)
    f.finish()
    return Switch(name, dpid, controller, trunk, joined)


def _parse_host(f: Fields) -> Host:
    name = f.name("name", max_len=IFNAME_MAX)
    addresses = tuple(_host_addresses(f))
    gateway = _gateway(f, "gateway", 4, addresses)
    gateway6 = _gateway(f, "gateway6", 6, addresses)
    tenant = f.name("tenant", default=None)
    f.finish()
    return Host(name, addresses,
                gateway if isinstance(gateway, ipaddress.IPv4Address) else None,
                gateway6 if isinstance(gateway6, ipaddress.IPv6Address) else None, tenant)


def _host_addresses(f: Fields) -> list[IfAddress]:
    """The valid host addresses of ``f``, each bad one reported at its index."""
    raw_list = f.seq("addresses")
    if "addresses" in f.data and isinstance(f.data["addresses"], list) and not raw_list:
        f.error("addresses", "must list at least one address")
    addresses = []
    for i, raw in enumerate(raw_list):
        path = f"{f.path}.addresses[{i}]"
        address = parse_interface_address(raw)
        if isinstance(address, str):
            f.problems.add(path, address)
            continue
        addresses.append(address)
    return addresses


def _gateway(f: Fields, key: str, version: int, addresses: tuple[IfAddress, ...]) -> IpAddress | None:
    text = f.ip(key, None)
    if text is None:
        return None
    gateway = ipaddress.ip_address(text)
    if gateway.version != version:
        f.error(key, f"{gateway} is not an IPv{version} address")
        return None
    # An IPv6 router is as often reached by its link-local address, which is in every host's subnet.
    if not gateway.is_link_local and not any(gateway in a.network for a in addresses):
        f.error(key, f"{gateway} is not in any subnet of the host's addresses")
    return gateway


def _parse_router(f: Fields) -> Router:
    name = f.name("name", max_len=IFNAME_MAX)
    engine, daemons, engine_config = parse_engine(f, ROUTER_ENGINES, Engine.FRR)
    loopback = tuple(ipaddress.ip_interface(a) for a in f.interface_addresses("loopback", []))
    interfaces = []
    for iface in f.items("interfaces"):
        ifname = iface.name("name", max_len=IFNAME_MAX)
        if ifname == "lo":
            iface.error("name", "'lo' is the loopback; use the router's loopback key")
        interfaces.append(RouterInterface(
            ifname, tuple(ipaddress.ip_interface(a) for a in iface.interface_addresses("addresses", []))))
        iface.finish()
    if not interfaces and isinstance(f.data.get("interfaces"), list):
        f.error("interfaces", "must list at least one interface")
    check_unique(f.problems, f.path, "interface name",
                 [(f"{f.path}.interfaces[{i}].name", x.name) for i, x in enumerate(interfaces)])
    f.finish()
    return Router(name, engine, tuple(interfaces), daemons, engine_config, loopback)


def _parse_link(f: Fields, nodes: dict[str, Switch | Host | Router]) -> Link | None:
    raw_ends = f.seq("ends")
    name = f.text("name", None)
    f.finish()
    if len(raw_ends) != 2:
        if isinstance(f.data.get("ends"), list):
            f.error("ends", f"must list exactly two endpoints, not {len(raw_ends)}")
        return None
    ends = [_parse_endpoint(f, f"{f.path}.ends[{j}]", raw, nodes) for j, raw in enumerate(raw_ends)]
    if ends[0] is None or ends[1] is None:
        return None
    if ends[0].is_host and ends[1].is_host:
        f.error("ends", "a link needs a switch port or a router NIC at one end at least")
        return None
    return Link(name or f"{ends[0]}-{ends[1]}", ends[0], ends[1])


def _parse_endpoint(f: Fields, path: str, raw: object,
                    nodes: dict[str, Switch | Host | Router]) -> Endpoint | None:
    def bad(reason: str) -> None:
        f.problems.add(path, reason)

    if not isinstance(raw, str):
        bad(f"{shown(raw)} is not SWITCH:PORT, ROUTER:NIC or HOST")
        return None
    try:
        end = Endpoint.parse(raw)
    except ValueError as exc:
        bad(str(exc))
        return None
    node = nodes.get(end.node)
    if node is None:
        bad(f"unknown switch, router or host {shown(end.node)}")
        return None
    if isinstance(node, Host):
        if not end.is_host:
            bad(f"{shown(end.node)} is a host: name it without a port (its one NIC is {Host.ifname})")
            return None
        return end
    if isinstance(node, Router):
        names = [i.name for i in node.interfaces if i.name]
        if end.ifname is None:
            bad(f"{shown(end.node)} is a router: name its NIC, like {end.node}:{names[0] if names else 'eth1'}")
            return None
        if end.ifname not in names:
            bad(f"router {shown(end.node)} has no interface {shown(end.ifname)} "
                f"(it has: {clip(', '.join(names), 100) or 'none'})")
            return None
        return end
    if end.port is None:
        bad(f"{shown(end.node)} is a switch: give a port number, like {end.node}:1")
        return None
    if not 1 <= end.port <= MAX_PORT:
        bad(f"port {end.port} is out of range (1 to {MAX_PORT})")
        return None
    ifname = port_ifname(end.node, end.port)
    if len(ifname) > IFNAME_MAX:
        bad(f"its interface name {shown(ifname)} is longer than Linux's {IFNAME_MAX} characters")
        return None
    return end
