"""Build and tear down a lab topology: OVS bridges, host and router namespaces, veth cables.

:func:`plan_lab` says, purely, what a topology needs; :class:`Lab` creates
it (an async context manager with guaranteed teardown) and records every
object in a state file before creating it, so :func:`lab_down` in another
process removes exactly what :func:`lab_up` made, and a failing bring-up
removes what it had made so far. Legacy routers run their engine (FRR or
BIRD) with the same code as the VMs (:mod:`routeflow.vnet.engine`), their
daemons recorded by pidfile like everything else.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from routeflow.config.schema import trunk_patch_names
from routeflow.lab.topology import LINK_STATES, SWITCH_STATES, Host, Link, Router, Switch, Topology, load_topology
from routeflow.protocol.auth import KEY_DIR
from routeflow.vnet import VnetError, engine, links, ovs
from routeflow.vnet.engine import EnginePlan, plan_engine
from routeflow.vnet.links import IfAddress
from routeflow.vnet.plan import IPV6_SYSCTLS, VM_SYSCTLS
from routeflow.vnet.resources import Lifecycle, Resource, ResourceLog, teardown

log = logging.getLogger("routeflow.lab")

DEFAULT_STATE = Path("/run/routeflow/lab.json")
#: Where legacy routers keep their engine's files, ``<root>/<router>/``.
ROUTER_RUN_ROOT = Path("/run/routeflow/lab")


class LabError(VnetError):
    """The lab cannot be built, changed or removed."""


@dataclass(frozen=True)
class Veth:
    """The veth pair that is one link: ``ifname`` in ``netns`` (None: the root namespace),
    ``peer`` in ``peer_netns``."""

    link: str
    ifname: str
    peer: str
    peer_netns: str | None
    netns: str | None = None


@dataclass(frozen=True)
class RouterPlan:
    """A legacy router: its namespace, addresses, sysctls and engine instance."""

    name: str
    addresses: tuple[tuple[str, tuple[IfAddress, ...]], ...]
    loopback: tuple[IfAddress, ...]
    sysctls: tuple[tuple[str, str], ...]
    engine_run: EnginePlan

    @property
    def netns(self) -> str:
        return self.name


@dataclass(frozen=True)
class LabPlan:
    """Everything a topology needs created, in creation order."""

    hosts: tuple[Host, ...]
    veths: tuple[Veth, ...]
    bridges: tuple[ovs.BridgeSpec, ...]
    routers: tuple[RouterPlan, ...] = ()
    #: Written in every host namespace before its NIC is created (no DAD delay).
    host_sysctls: tuple[tuple[str, str], ...] = IPV6_SYSCTLS


def plan_lab(topology: Topology, run_root: Path = ROUTER_RUN_ROOT) -> LabPlan:
    """What to create for ``topology``: pure, no system access."""
    veths = []
    for link in topology.links:
        # The first end is a switch port (root namespace) if there is one, else a router NIC:
        # a host end always goes in the host's namespace as the peer.
        a, b = (link.b, link.a) if link.a.is_host or (link.b.is_switch and not link.a.is_switch) else link.ends
        netns, ifname = topology.interface(a)
        peer_netns, peer = topology.interface(b)
        veths.append(Veth(link.name, ifname, peer, peer_netns, netns))
    bridges = tuple(
        ovs.BridgeSpec(s.name, s.dpid, s.controller if s.joined else (),
                       tuple((s.port_ifname(port), port) for port in sorted(topology.ports(s.name))),
                       _trunk_patch(s))
        for s in topology.switches)
    return LabPlan(topology.hosts, tuple(veths), bridges, tuple(_plan_router(r, run_root) for r in topology.routers))


def _trunk_patch(switch: Switch) -> tuple[tuple[str, int | None, str], ...]:
    """The switch end of the trunk's patch-port pair; the RFVS end comes with the VMs."""
    if switch.trunk is None:
        return ()
    switch_end, rfvs_end = trunk_patch_names(switch.dpid)
    return ((switch_end, switch.trunk, rfvs_end),)


def _plan_router(router: Router, run_root: Path) -> RouterPlan:
    engine_run = plan_engine(router.engine, router.name, router.engine_config, router.daemons, run_root)
    assert engine_run is not None  # the topology allows only engines that run daemons
    return RouterPlan(router.name, tuple((i.name, i.addresses) for i in router.interfaces), router.loopback,
                      VM_SYSCTLS, engine_run)


class Lab(Lifecycle):
    """A running lab: ``async with Lab(topology) as lab:`` builds it and always removes it.

    ``start()``/``stop()`` do the same without a ``with`` block (``routeflow lab up``).
    """

    def __init__(self, topology: Topology, state_path: Path | None = DEFAULT_STATE,
                 run_root: Path = ROUTER_RUN_ROOT, keys: Path = KEY_DIR) -> None:
        self.topology = topology
        #: Where the switches' TLS credential is, if their controller targets are ``ssl:``.
        self.keys = keys
        self.plan = plan_lab(topology, run_root)
        self.record = ResourceLog(Path(state_path) if state_path else None,
                                  meta={"topology": str(Path(topology.source).resolve())})

    async def start(self) -> None:
        """Create everything; on any failure remove what was created and re-raise."""
        if self.record.path is not None and self.record.path.exists():
            raise LabError(f"a lab is already up (state file {self.record.path}); "
                           "remove it first with `routeflow lab down`")
        await ovs.check_running()
        await self._check_free()
        try:
            await self._create()
        except BaseException:
            log.error("lab bring-up failed; removing what was created")
            try:
                await self.stop()
            except VnetError as exc:  # report, but let the original failure surface
                log.error("%s", exc)
            raise
        log.info("lab up: %d switches, %d hosts, %d routers, %d links", len(self.plan.bridges),
                 len(self.plan.hosts), len(self.plan.routers), len(self.plan.veths))

    async def stop(self) -> None:
        """Remove everything this lab created; raise LabError if something stays."""
        await _remove_all(self.record)

    async def _check_free(self) -> None:
        namespaces = [h.name for h in self.plan.hosts] + [r.netns for r in self.plan.routers]
        taken = [f"namespace {name}" for name in namespaces if links.netns_exists(name)]
        bridges = set(await ovs.list_bridges())
        taken += [f"bridge {b.name}" for b in self.plan.bridges if b.name in bridges]
        root_ends = ([v.ifname for v in self.plan.veths if v.netns is None]
                     + [v.peer for v in self.plan.veths if v.peer_netns is None])
        taken += [f"interface {name}" for name in await links.existing_links(root_ends)]
        if taken:
            raise LabError(f"cannot build the lab from {self.topology.source}: already in use: {', '.join(taken)} "
                           "(is another lab or test running? `routeflow lab down` removes a previous lab)")

    async def _create(self) -> None:
        for host in self.plan.hosts:
            self.record.add(Resource("netns", host.name, host.name))
            await links.create_netns(host.name)
            await links.set_sysctls(host.name, dict(self.plan.host_sysctls))
        for router in self.plan.routers:
            self.record.add(Resource("netns", router.netns, router.name))
            await links.create_netns(router.netns)
            await links.set_sysctls(router.netns, dict(router.sysctls))
            await links.add_addresses(router.netns, "lo", router.loopback)
        for veth in self.plan.veths:
            # A veth between two namespaces goes with them; only root ends are recorded.
            if veth.netns is None:
                self.record.add(Resource("link", veth.ifname, veth.link))
            await links.add_veth(veth.ifname, veth.peer, veth.peer_netns, netns=veth.netns)
        for host in self.plan.hosts:
            await links.add_addresses(host.name, Host.ifname, host.addresses)
            for gateway in host.gateways:
                await links.add_default_route(host.name, gateway, Host.ifname)
        for router in self.plan.routers:
            for ifname, addresses in router.addresses:
                await links.add_addresses(router.netns, ifname, addresses)
        if any(bridge.tls for bridge in self.plan.bridges):
            self.record.add(Resource("ssl", "openvswitch", "lab"))
            await ovs.set_switch_credential(self.keys)
        for bridge in self.plan.bridges:
            self.record.add(Resource("bridge", bridge.name, bridge.name))
            await ovs.add_bridge(bridge)
        for router in self.plan.routers:
            await engine.start_engine(router.netns, f"router {router.name}", router.engine_run, self.record,
                                      owner=router.name)

    async def set_link(self, spec: str, state: str) -> Link:
        """Put link ``spec`` (a link name or an endpoint) in ``state``, one of :data:`LINK_STATES`."""
        return await _set_link(self.topology, spec, state)


async def _set_link(topology: Topology, spec: str, state: str) -> Link:
    if state not in LINK_STATES:
        raise LabError(f"link state {state!r} is not one of {', '.join(LINK_STATES)}")
    try:
        link = topology.find_link(spec)
    except KeyError as exc:
        raise LabError(str(exc.args[0])) from exc
    if state == "silent":
        others = [end.node for end in link.ends if not end.is_switch]
        if others:
            raise LabError(f"link {link.name}: a silent failure needs switch ports at both ends, "
                           f"and {others[0]} is not a switch")
    for end in link.ends:
        namespace, ifname = topology.interface(end)
        await links.set_link_state(ifname, state != "down", namespace)
        if end.is_switch and state != "down":
            await ovs.set_port_forwarding(end.node, ifname, state == "up")
    log.info("link %s %s", link.name, state)
    return link


async def _remove_all(record: ResourceLog) -> None:
    failures = await teardown(record)
    if failures:
        raise LabError("could not remove: " + "; ".join(failures))
    record.remove_file()


# --- synchronous entry points (CLI, harness, tests) -------------------------


def lab_up(topology_path: str | Path, state_path: str | Path = DEFAULT_STATE) -> Topology:
    """Build the lab of a topology file and leave it up; ``lab_down`` removes it."""
    topology = load_topology(topology_path)
    asyncio.run(Lab(topology, Path(state_path)).start())
    return topology


def lab_down(state_path: str | Path = DEFAULT_STATE) -> bool:
    """Remove the lab recorded in ``state_path``; False if there was none."""
    path = Path(state_path)
    if not path.exists():
        return False
    asyncio.run(_remove_all(ResourceLog.load(path)))
    log.info("lab down")
    return True


def set_link(spec: str, state: str, state_path: str | Path = DEFAULT_STATE) -> Link:
    """Put a link of the lab that is up, by name or endpoint, in ``state``: ``up``, ``down``
    or ``silent`` (see :data:`LINK_STATES`)."""
    path = Path(state_path)
    if not path.exists():
        raise LabError(f"no lab is up (no state file {path})")
    topology = load_topology(ResourceLog.load(path).meta["topology"])
    return asyncio.run(_set_link(topology, spec, state))


def set_switch(name: str, state: str, state_path: str | Path = DEFAULT_STATE) -> Switch:
    """Connect switch ``name`` of the lab that is up to its controllers (``join``: a switch
    appearing in the network) or disconnect it (``leave``: it disappears; its links stay)."""
    if state not in SWITCH_STATES:
        raise LabError(f"switch state {state!r} is not one of {', '.join(SWITCH_STATES)}")
    path = Path(state_path)
    if not path.exists():
        raise LabError(f"no lab is up (no state file {path})")
    topology = load_topology(ResourceLog.load(path).meta["topology"])
    switch = next((s for s in topology.switches if s.name == name), None)
    if switch is None:
        raise LabError(f"no switch {name!r} in {topology.source} (its switches: "
                       f"{', '.join(s.name for s in topology.switches)})")
    asyncio.run(ovs.set_controllers(switch.name, switch.controller if state == "join" else ()))
    log.info("switch %s %s", name, "joined" if state == "join" else "left")
    return switch


def host_exec(host: str, argv: Sequence[str], timeout: float | None = None,
              check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside host ``host``'s namespace; its output is captured as text.
    (To ping, :func:`routeflow.harness.ping` parses the result, IPv4 or IPv6.)"""
    return subprocess.run(links.netns_argv(host, argv), capture_output=True, text=True, timeout=timeout,
                          check=check)
