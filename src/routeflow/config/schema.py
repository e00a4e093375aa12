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

from collections.abc import Mapping
from dataclasses import dataclass, field

from routeflow.protocol.transport import DEFAULT_SERVER, DEFAULT_TCP

ENGINES = ("frr", "bird", "none")
#: Where a VM's routing messages to another routeflow VM travel (see VmConfig.routing_plane).
ROUTING_PLANES = ("physical", "virtual")
FRR_DAEMONS = ("ospfd", "bgpd", "ospf6d", "ripd", "staticd", "bfdd")
#: Bounds of the link-discovery probe interval, seconds (see Config.discovery_interval).
DISCOVERY_INTERVAL_MIN, DISCOVERY_INTERVAL_MAX = 0.1, 60.0


@dataclass(frozen=True)
class VmInterface:
    """A VM NIC mirroring one switch port."""

    name: str
    port: int
    addresses: tuple[str, ...] = ()
    #: Fixed MAC for the NIC (also the router MAC on the switch port); random if None.
    mac: str | None = None


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
    port: int
    #: The RFVS port it lands on: a host NIC (real switches) or, if None, a patch
    #: port to a switch on the same Open vSwitch (see :func:`trunk_patch_names`).
    rfvs_interface: str | None = None

    def rfvs_port_name(self, dpid: int) -> str:
        return self.rfvs_interface or trunk_patch_names(dpid)[1]


@dataclass(frozen=True)
class VmConfig:
    """One virtual router and the datapath it mirrors (logical split)."""

    name: str
    dpid: int
    interfaces: tuple[VmInterface, ...]
    engine: str = "frr"
    daemons: tuple[str, ...] = ()
    #: Routing-engine configuration text (frr: frr.conf syntax; bird: bird.conf syntax,
    #: which must include ``router id``, ``protocol device`` and a ``protocol kernel``
    #: exporting its routes).
    engine_config: str = ""
    loopback: tuple[str, ...] = ()
    #: Slow path through a trunk port (None: relayed by the controller).
    trunk: Trunk | None = None
    #: ``physical``: everything the VM sends leaves through the mirrored switch port.
    #: ``virtual``: on a link discovered between two switches whose VMs are both
    #: ``virtual``, the two VM NICs are wired to each other on the RFVS, so routing
    #: messages never cross the physical link (the paper's second sub-mode).
    routing_plane: str = "physical"

    def interface(self, ifname: str) -> VmInterface | None:
        return next((i for i in self.interfaces if i.name == ifname), None)

    def port_of(self, ifname: str) -> int | None:
        iface = self.interface(ifname)
        return iface.port if iface else None


@dataclass(frozen=True)
class RfvsConfig:
    """The RFVS: the Open vSwitch bridge the VM NICs plug into."""

    bridge: str = "rfvs"
    dpid: int = 0x7266
    #: OpenFlow controller target the RFVS bridge is given.
    controller: str = "tcp:127.0.0.1:6653"


#: Roles whose unread bytes are bounded separately (see Limits.unread).
PEER_ROLES = ("controller", "client", "operator")


@dataclass(frozen=True)
class Limits:
    """What one RF-protocol peer may hold of the server (the ``limits`` section):
    how long it may take to say hello, how many connections may be open at once,
    when a silent one is dropped, and how much of what the server sends it may
    leave unread (by role) before the server drops it."""

    handshake_timeout: float = 10.0
    #: A peer is pinged after this long; one not heard from for ``idle_timeout`` is dropped
    #: (a half-open connection would otherwise hold its place, a controller's or a VM's, forever).
    keepalive: float = 5.0
    idle_timeout: float = 20.0
    max_connections: int = 256
    #: Unread bytes queued to one peer, by role. The controller is sent whole
    #: tables (a million flows are some 150 MB); a client and an operator little.
    unread: Mapping[str, int] = field(default_factory=lambda: {
        "controller": 1 << 30, "client": 64 << 20, "operator": 64 << 20})


@dataclass(frozen=True)
class Config:
    vms: tuple[VmConfig, ...]
    rfvs: RfvsConfig = field(default_factory=RfvsConfig)
    #: Addresses the server listens on.
    listen: tuple[str, ...] = (DEFAULT_SERVER, DEFAULT_TCP)
    #: Whether the server creates the virtual environment (namespaces, RFVS, engines).
    manage_vms: bool = True
    #: Seconds between link-discovery probes on the datapaths of ``virtual`` routing-plane
    #: VMs; a link that passes none for 3.5 intervals while its ports stay up is unwired.
    discovery_interval: float = 1.0
    limits: Limits = field(default_factory=Limits)
    source: str = ""

    def vm(self, name: str) -> VmConfig | None:
        return next((v for v in self.vms if v.name == name), None)

    def vm_of_dpid(self, dpid: int) -> VmConfig | None:
        return next((v for v in self.vms if v.dpid == dpid), None)
