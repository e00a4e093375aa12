"""What the virtual environment of a config consists of: a pure plan.

:func:`plan_vnet` turns a :class:`~routeflow.config.schema.Config` into the
RFVS bridge and, per VM, its namespace, NICs, sysctls, engine files and
daemon command lines (FRR or BIRD: :mod:`routeflow.vnet.engine`), without
touching the system, so it is unit tested and the drivers only carry it out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from routeflow.config.fields import Problems
from routeflow.config.schema import Config, VmConfig, trunk_patch_names
from routeflow.protocol.auth import KEY_DIR
from routeflow.protocol.transport import DEFAULT_SERVER
from routeflow.vnet import frr
from routeflow.vnet.engine import DaemonPlan, EnginePlan, plan_engine
from routeflow.vnet.links import IFNAME_MAX, IfAddress
from routeflow.vnet.ovs import BridgeSpec

#: IPv6 settings of every namespace routeflow creates, written before its NICs
#: exist so that they inherit the ``default`` values. No duplicate address
#: detection: the namespace's addresses, link-local ones included, are usable
#: at once (routing protocols speak from link-local addresses, and DAD would
#: hold them back a second or more). Addresses survive a NIC going down:
#: the RF-Client sets a NIC down when its switch port goes down, and IPv6
#: would otherwise flush its addresses for good. ``addr_gen_mode`` stays at
#: the kernel's default, so every NIC gets its link-local address.
IPV6_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv6.conf.all.keep_addr_on_down", "1"),
    ("net.ipv6.conf.default.keep_addr_on_down", "1"),
)

#: Every VM routes, and answers on whichever NIC traffic arrives (flows, not
#: the kernel's idea of the reverse path, decide where packets go).
VM_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    *IPV6_SYSCTLS,
)


@dataclass(frozen=True)
class NicPlan:
    """A VM NIC: ``name`` inside the VM, ``host_ifname`` its veth peer on the RFVS."""

    name: str
    host_ifname: str
    port: int
    mac: str | None
    addresses: tuple[IfAddress, ...]


@dataclass(frozen=True)
class VmPlan:
    name: str
    dpid: int
    #: The network namespace (for the namespace driver: the VM's name).
    netns: str
    nics: tuple[NicPlan, ...]
    loopback: tuple[IfAddress, ...]
    sysctls: tuple[tuple[str, str], ...]
    engine: str
    #: The engine instance (config file, daemons); None for engine "none".
    engine_run: EnginePlan | None

    @property
    def run_dir(self) -> Path | None:
        """Where the engine's config, pidfiles and sockets live (None: no engine)."""
        return self.engine_run.run_dir if self.engine_run else None

    @property
    def engine_conf(self) -> str:
        """The engine's config file text (``frr.conf``, ``bird.conf``)."""
        return self.engine_run.conf if self.engine_run else ""

    @property
    def daemons(self) -> tuple[DaemonPlan, ...]:
        """Daemons in start order (FRR: zebra first, which the others connect to)."""
        return self.engine_run.daemons if self.engine_run else ()


@dataclass(frozen=True)
class VnetPlan:
    bridge: BridgeSpec
    vms: tuple[VmPlan, ...]

    def vm(self, name: str) -> VmPlan:
        return next(v for v in self.vms if v.name == name)


def plan_vnet(config: Config, run_root: Path = frr.DEFAULT_RUN_ROOT) -> VnetPlan:
    """The plan for ``config``; raise ConfigError if a derived name does not fit Linux."""
    problems = Problems(config.source or "<config>")
    vms = tuple(_plan_vm(i, vm, run_root, problems) for i, vm in enumerate(config.vms))
    problems.raise_if_any()
    rfvs = config.rfvs
    # Trunks land on a host NIC (real switches) or on a patch port whose peer
    # is the switch end a lab on this Open vSwitch creates. One per datapath, however
    # many VMs share it (they share its trunk).
    trunks = {vm.dpid: vm.trunk for vm in config.vms if vm.trunk is not None}
    ports = tuple((trunk.rfvs_interface, None) for trunk in trunks.values() if trunk.rfvs_interface is not None)
    patches = tuple((rfvs_end, None, switch_end) for dpid, trunk in trunks.items() if trunk.rfvs_interface is None
                    for switch_end, rfvs_end in [trunk_patch_names(dpid)])
    return VnetPlan(BridgeSpec(rfvs.bridge, rfvs.dpid, rfvs.controller, ports, patches), vms)


def plan_vm(vm: VmConfig, run_root: Path = frr.DEFAULT_RUN_ROOT) -> VmPlan:
    """The plan of one VM (one made at runtime); raise ConfigError if a name does not fit Linux."""
    problems = Problems(vm.name)
    plan = _plan_vm(0, vm, run_root, problems)
    problems.raise_if_any()
    return plan


def host_ifname(vm: str, nic: str) -> str:
    """The RFVS-side name of a VM NIC's veth: ``<vm>-<nic>``."""
    return f"{vm}-{nic}"


def _plan_vm(index: int, vm: VmConfig, run_root: Path, problems: Problems) -> VmPlan:
    nics = []
    for j, iface in enumerate(vm.interfaces):
        outer = host_ifname(vm.name, iface.name)
        if len(outer) > IFNAME_MAX:
            problems.add(f"vms[{index}].interfaces[{j}].name",
                         f"the RFVS interface name {outer!r} is longer than Linux's {IFNAME_MAX} characters")
        nics.append(NicPlan(iface.name, outer, iface.port, iface.mac,
                            tuple(ipaddress.ip_interface(a) for a in iface.addresses)))
    return VmPlan(
        name=vm.name,
        dpid=vm.dpid,
        netns=vm.name,
        nics=tuple(nics),
        loopback=tuple(ipaddress.ip_interface(a) for a in vm.loopback),
        sysctls=VM_SYSCTLS,
        engine=vm.engine,
        engine_run=plan_engine(vm.engine, vm.name, vm.engine_config, vm.daemons, run_root),
    )


def digest(value: object) -> str:
    """A short digest of a plan or part of one (dataclasses, tuples, paths,
    addresses, strings): equal plans have equal digests, in any process."""
    text = json.dumps(value, default=_plain, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def vm_digests(vm: VmPlan) -> dict[str, str]:
    """The digest of each part of ``vm``'s plan, by field (``nics``, ``engine_run``...):
    recorded when the VM is created, they tell a later run whether its plan would
    create the same VM, and if not, which parts differ."""
    return {field.name: digest(getattr(vm, field.name)) for field in dataclasses.fields(vm)}


def client_server_address(config: Config) -> str:
    """The server address an RF-Client in a VM should use.

    A Unix socket if the server listens on one: a namespace has its own
    loopback, so ``tcp:127.0.0.1`` inside a VM is not the server's.
    Otherwise the first listen address (which must then be routable). A server
    pair's addresses (``store.servers``), its Unix sockets if it has any.
    """
    if config.store.servers:  # a server pair: each of its servers in turn (the active one listens)
        unix = [a for a in config.store.servers if a.startswith("unix:")]
        return ",".join(unix or config.store.servers)
    return next((a for a in config.listen if a.startswith("unix:")), config.listen[0] if config.listen
                else DEFAULT_SERVER)


def client_argv(vm: str, server: str = DEFAULT_SERVER, keys: Path = KEY_DIR) -> list[str]:
    """The RF-Client command for ``vm`` (run inside the VM), with where its key is."""
    return [sys.executable, "-m", "routeflow", "client", "--vm", vm, "--server", server, "--keys", str(keys)]
