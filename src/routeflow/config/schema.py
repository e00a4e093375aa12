"""The routeflow configuration: which VM mirrors which datapath, and what it runs.

Example (see ``examples/rftest2/routeflow.yaml``)::

    rfvs: {bridge: rfvs, dpid: 0x7266}
    vms:
      - name: rA
        dpid: 0x1
        engine: frr
        daemons: [ospfd]
        interfaces:
          - {name: eth1, port: 1, addresses: [172.31.1.1/24]}
        engine_config: |
          router ospf
           network 172.31.0.0/16 area 0
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, get_args

from routeflow.protocol.messages import Role
from routeflow.protocol.transport import DEFAULT_SERVER, DEFAULT_TCP


class Engine(StrEnum):
    """The routing engine a VM (or a lab router) runs."""

    FRR = "frr"
    BIRD = "bird"
    #: No engine: a FIB managed by hand.
    NONE = "none"


class RoutingPlane(StrEnum):
    """Where a VM's routing messages to another routeflow VM travel (see VmConfig.routing_plane)."""

    PHYSICAL = "physical"
    VIRTUAL = "virtual"


FRR_DAEMONS = ("ospfd", "bgpd", "ospf6d", "ripd", "staticd", "bfdd")
#: Highest OpenFlow port number of a physical port (OFPP_MAX).
OFPP_MAX = 0xFFFFFF00

#: The metadata entry of a dataclass field that is a config key (see :func:`key`).
KEY = "routeflow.config.key"


@dataclass(frozen=True)
class Read:
    """How the loader reads a config key: the :class:`~routeflow.config.fields.Fields`
    accessor (``integer``, ``seconds``, ``name``...) and its arguments besides the key
    and the default (bounds, choices)."""

    accessor: str
    args: Mapping[str, Any]


def key(accessor: str, **args: Any) -> dict[str, Read]:
    """The metadata declaring a dataclass field a config key of its name, read with
    ``accessor`` and ``args``; absent, it is the field's default, and with no default it
    is required (see :func:`routeflow.config.loader.read_keys`)."""
    return {KEY: Read(accessor, args)}


@dataclass(frozen=True)
class VmInterface:
    """A VM NIC mirroring one switch port."""

    name: str = field(metadata=key("name"))
    port: int = field(metadata=key("integer", lo=1, hi=OFPP_MAX))
    addresses: tuple[str, ...] = field(default=(), metadata=key("interface_addresses"))
    #: Fixed MAC for the NIC (also the router MAC on the switch port); random if None.
    mac: str | None = field(default=None, metadata=key("mac"))
    #: The 802.1Q VLAN the NIC mirrors on its switch port (a sub-interface: frames of the
    #: port tagged ``vlan`` are this NIC's, and what it sends leaves tagged); None: untagged.
    vlan: int | None = field(default=None, metadata=key("integer", lo=1, hi=4094))


class VirtualPort(NamedTuple):
    """Where a VM NIC is on the physical plane: a switch port, or a VLAN on one.

    The mapping table of every mode of operation is made of these: logical split
    has all of a VM's virtual ports on one datapath and one VM per datapath;
    multiplexing puts several VMs' virtual ports on one datapath.
    """

    dpid: int
    port: int
    #: None: untagged.
    vlan: int | None = None

    def __str__(self) -> str:
        where = f"{self.dpid:#x} port {self.port}"
        return where if self.vlan is None else f"{where} vlan {self.vlan}"


#: VMs one datapath can be shared by: each has a FIB table of its own there, tables 1 to
#: 252 (:data:`routeflow.flows.pipeline.MAX_CONTEXTS`, which a test holds equal).
MAX_VMS_PER_DATAPATH = 252

#: A VLAN id carries the switch port on a trunk: ports 1..4094 fit.
TRUNK_MAX_PORT = 4094


def trunk_patch_names(dpid: int) -> tuple[str, str]:
    """(switch end, RFVS end) of the OVS patch-port pair that cables datapath ``dpid``'s
    trunk to an RFVS on the same Open vSwitch (the lab's case)."""
    return f"rft{dpid:x}-sw", f"rft{dpid:x}-rf"


@dataclass(frozen=True)
class Trunk:
    """The data-plane slow path of one datapath: a switch port cabled to the RFVS.

    Slow-path packets cross it tagged with their switch port as VLAN id, with
    no packet-in and no packet-out: the controller is out of the path.
    """

    #: The trunk's port on the mirrored switch.
    port: int = field(metadata=key("integer", lo=1, hi=OFPP_MAX))
    #: The RFVS port it lands on: a host NIC (real switches) or, if None, a patch
    #: port to a switch on the same Open vSwitch (see :func:`trunk_patch_names`).
    rfvs_interface: str | None = field(default=None, metadata=key("ifname"))

    def rfvs_port_name(self, dpid: int) -> str:
        return self.rfvs_interface or trunk_patch_names(dpid)[1]


@dataclass(frozen=True)
class VmConfig:
    """One virtual router and the datapath it mirrors: the whole of it (logical split), or the
    ports and VLANs its NICs claim, beside other VMs on the same datapath (multiplexing)."""

    # At most 10 long: leaves room for "-ethN" on host-side veth names.
    name: str = field(metadata=key("name", max_len=10))
    dpid: int = field(metadata=key("dpid"))
    interfaces: tuple[VmInterface, ...]
    engine: Engine = Engine.FRR
    daemons: tuple[str, ...] = ()
    #: Routing-engine configuration text (frr: frr.conf syntax; bird: bird.conf syntax,
    #: which must include ``router id``, ``protocol device`` and a ``protocol kernel``
    #: exporting its routes).
    engine_config: str = ""
    loopback: tuple[str, ...] = field(default=(), metadata=key("interface_addresses"))
    #: Slow path through a trunk port (None: relayed by the controller).
    trunk: Trunk | None = None
    #: ``physical``: everything the VM sends leaves through the mirrored switch port.
    #: ``virtual``: on a link discovered between two switches whose VMs are both
    #: ``virtual``, the two VM NICs are wired to each other on the RFVS, so routing
    #: messages never cross the physical link (the paper's second sub-mode).
    routing_plane: RoutingPlane = field(default=RoutingPlane.PHYSICAL,
                                        metadata=key("choice", choices=tuple(RoutingPlane)))

    def interface(self, ifname: str) -> VmInterface | None:
        return next((i for i in self.interfaces if i.name == ifname), None)

    def virtual_port(self, nic: VmInterface) -> VirtualPort:
        """The virtual port ``nic`` mirrors."""
        return VirtualPort(self.dpid, nic.port, nic.vlan)

    def port_of(self, ifname: str) -> int | None:
        iface = self.interface(ifname)
        return iface.port if iface else None


@dataclass(frozen=True)
class RfvsConfig:
    """The RFVS: the Open vSwitch bridge the VM NICs plug into."""

    bridge: str = field(default="rfvs", metadata=key("name"))
    dpid: int = field(default=0x7266, metadata=key("dpid"))
    #: OpenFlow controller target the RFVS bridge is given, or a list of them (a controller
    #: pair: the bridge connects to each, and the one the server elects is its master).
    controller: tuple[str, ...] = field(default=("tcp:127.0.0.1:6653",), metadata=key("controller"))


#: The longest template name: its VMs are named ``<name><n>`` (n up to 999) and their
#: NICs ``eth<port>`` (ports up to 9999), so ``<vm>-eth<port>`` fits Linux's 15 characters.
TEMPLATE_NAME_MAX = 4
TEMPLATE_POOL_MAX = 999
TEMPLATE_PORT_MAX = 9999


@dataclass(frozen=True)
class Template:
    """How the RF-Server makes a VM for a switch that no configured VM mirrors (the paper's
    "for each OpenFlow switch found instantiates one VM"): which switches it admits, what
    the VM runs, and the pools its addresses come from.

    VM ``n`` of the template (``n`` its switch's datapath id if the pools reach that far
    and it is free, else the lowest free, from 1) is named ``<name><n>``; it
    gets the ``n``-th address of ``router_ids`` as its router id and loopback ``/32``,
    and one NIC ``eth<port>`` per port up when the switch joins. Those NICs are
    unnumbered (the router id, ``/32``, for point-to-point routing protocols), but for
    ``host_port``, which gets the ``n``-th subnet of ``host_subnets`` (counting from 0:
    switch 3 of ``10.1.0.0/16`` gets ``10.1.3.0/24``; the router its first address). ``engine_config`` may use ``$name``, ``$dpid``, ``$router_id``,
    ``$host_subnet``, ``$host_address`` and ``$interfaces``: ``nic_config`` once per
    unnumbered NIC, with ``$ifname`` (FRR has no wildcard interfaces; BIRD needs none).
    """

    #: The prefix of its VMs' names (``edge`` makes ``edge1``, ``edge2``...).
    name: str = field(metadata=key("name", max_len=TEMPLATE_NAME_MAX))
    #: The switches admitted: ``all`` (every switch no VM mirrors) or a list of datapath
    #: ids (None: all); a switch no template admits is rejected.
    admit: tuple[int, ...] | None
    #: The pool of router ids, an IPv4 network: VM ``n`` gets its ``n``-th address.
    router_ids: str = field(metadata=key("network"))
    engine: Engine = Engine.FRR
    daemons: tuple[str, ...] = ()
    engine_config: str = ""
    #: The engine config of one unnumbered NIC, ``$ifname`` its name: what ``$interfaces`` repeats.
    nic_config: str = field(default="", metadata=key("text"))
    #: The switch port facing the switch's hosts (None: none does).
    host_port: int | None = field(default=None, metadata=key("integer", lo=1, hi=TEMPLATE_PORT_MAX))
    #: The pool of host subnets, an IPv4 network cut in ``host_prefixlen`` long subnets
    #: (required with ``host_port``).
    host_subnets: str | None = field(default=None, metadata=key("network"))
    #: The length of each host subnet of the pool.
    host_prefixlen: int = field(default=24, metadata=key("integer", lo=8, hi=30))
    #: Seconds a switch that left keeps its VM: back within them, it finds it as it was.
    grace: float = field(default=30.0, metadata=key("seconds", lo=1, hi=86400))


#: Roles whose unread bytes are bounded separately (see Limits.unread): the RF-protocol's.
PEER_ROLES: tuple[str, ...] = get_args(Role)


@dataclass(frozen=True)
class Limits:
    """What one RF-protocol peer may hold of the server (the ``limits`` section):
    how long it may take to say hello, how many connections may be open at once,
    when a silent one is dropped, and how much of what the server sends it may
    leave unread (by role) before the server drops it."""

    handshake_timeout: float = field(default=10.0, metadata=key("seconds", lo=0.5, hi=300))
    #: A peer is pinged after this long; one not heard from for ``idle_timeout`` is dropped
    #: (a half-open connection would otherwise hold its place, a controller's or a VM's, forever).
    keepalive: float = field(default=5.0, metadata=key("seconds", lo=0.5, hi=600))
    idle_timeout: float = field(default=20.0, metadata=key("seconds", lo=1, hi=3600))
    max_connections: int = field(default=256, metadata=key("integer", lo=4, hi=65536))
    #: Unread bytes queued to one peer, by role. The controller is sent whole
    #: tables (a million flows are some 150 MB); a client and an operator little.
    unread: Mapping[str, int] = field(default_factory=lambda: {
        "controller": 1 << 30, "client": 64 << 20, "operator": 64 << 20})


#: Where the operator's HTTP surface (REST API, metrics) listens unless configured.
DEFAULT_HTTP = "127.0.0.1:8080"


@dataclass(frozen=True)
class HttpConfig:
    """The operator's HTTP surface of the server (the ``http`` section): the REST API under
    ``/api/v1/``, its OpenAPI document and the Prometheus metrics at ``/metrics``."""

    #: ``HOST:PORT`` (``[::1]:8080`` for IPv6), or ``off`` for no HTTP surface.
    listen: str | None = DEFAULT_HTTP
    #: A file holding the bearer token every request from off this host must carry. Required
    #: to listen off loopback (requests from loopback need none: the API only reads).
    token_file: str | None = None


class StoreKind(StrEnum):
    """Where the RF-Server keeps its NIB (see StoreConfig.kind)."""

    EMBEDDED = "embedded"
    ETCD = "etcd"


@dataclass(frozen=True)
class StoreConfig:
    """Where the RF-Server keeps its NIB, and whether it runs alone or as a pair with a
    standby (the ``store`` section)."""

    #: ``embedded``: in the server's memory, one server. ``etcd``: in etcd as well, for a
    #: server pair: two servers on one config, one active, the other standing by to take
    #: over when the active one's lease expires.
    kind: StoreKind = field(default=StoreKind.EMBEDDED, metadata=key("choice", choices=tuple(StoreKind)))
    #: The etcd cluster's client URLs, ``http://HOST:PORT`` each (``kind: etcd`` only, and required).
    endpoints: tuple[str, ...] = ()
    #: Seconds the active server's lease lasts unrenewed: the longest a dead active server
    #: is waited for, and the soonest the standby takes over (etcd: whole seconds).
    lease_ttl: int = field(default=1, metadata=key("integer", lo=1, hi=30))
    #: Where in etcd the pair's keys are: two pairs may share a cluster under two prefixes.
    prefix: str = field(default="routeflow", metadata=key("name", max_len=64))
    #: The addresses of the pair's servers (each started with ``--listen`` one of them),
    #: which the RF-Clients the servers start try in turn; give the controller and
    #: operators the same list, comma-separated, as ``--server``.
    servers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    vms: tuple[VmConfig, ...]
    rfvs: RfvsConfig = field(default_factory=RfvsConfig)
    #: Addresses the server listens on.
    listen: tuple[str, ...] = (DEFAULT_SERVER, DEFAULT_TCP)
    #: Whether the server creates the virtual environment (namespaces, RFVS, engines).
    manage_vms: bool = field(default=True, metadata=key("flag"))
    #: Seconds between link-discovery probes on the datapaths of ``virtual`` routing-plane
    #: VMs; a link that passes none for 3.5 intervals while its ports stay up is unwired.
    discovery_interval: float = field(default=1.0, metadata=key("seconds", lo=0.1, hi=60.0))
    limits: Limits = field(default_factory=Limits)
    http: HttpConfig = field(default_factory=HttpConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    #: How VMs are made for switches no VM mirrors, tried in order (none: such switches are left alone).
    templates: tuple[Template, ...] = ()
    source: str = ""

    def vm(self, name: str) -> VmConfig | None:
        return next((v for v in self.vms if v.name == name), None)

    def vms_of_dpid(self, dpid: int) -> tuple[VmConfig, ...]:
        """The VMs with virtual ports on datapath ``dpid``, in config order: one in logical
        split, several when the datapath is multiplexed."""
        return self._by_dpid.get(dpid, ())

    def context(self, vm: VmConfig) -> int:
        """``vm``'s routing context on its datapath: its place among the VMs sharing it
        (0 for the first, and in logical split). It names the VM's FIB table there."""
        return self.vms_of_dpid(vm.dpid).index(vm)

    def shared(self, dpid: int) -> bool:
        """Whether several VMs share datapath ``dpid`` (multiplexing)."""
        return len(self.vms_of_dpid(dpid)) > 1

    @functools.cached_property
    def _by_dpid(self) -> dict[int, tuple[VmConfig, ...]]:
        grouped: dict[int, list[VmConfig]] = {}
        for vm in self.vms:
            grouped.setdefault(vm.dpid, []).append(vm)
        return {dpid: tuple(vms) for dpid, vms in grouped.items()}
