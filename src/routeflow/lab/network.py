"""Build and tear down a lab topology: OVS bridges, host namespaces, veth cables.

:func:`plan_lab` says, purely, what a topology needs; :class:`Lab` creates
it (an async context manager with guaranteed teardown) and records every
object in a state file before creating it, so :func:`lab_down` in another
process removes exactly what :func:`lab_up` made, and a failing bring-up
removes what it had made so far.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from routeflow.lab.topology import Host, Link, Topology, load_topology
from routeflow.vnet import VnetError, links, ovs
from routeflow.vnet.resources import Lifecycle, Resource, ResourceLog, teardown

log = logging.getLogger("routeflow.lab")

DEFAULT_STATE = Path("/run/routeflow/lab.json")


class LabError(VnetError):
    """The lab cannot be built, changed or removed."""


@dataclass(frozen=True)
class Veth:
    """The veth pair that is one link: ``ifname`` in the root namespace, ``peer`` in ``peer_netns``."""

    link: str
    ifname: str
    peer: str
    peer_netns: str | None


@dataclass(frozen=True)
class LabPlan:
    """Everything a topology needs created, in creation order."""

    hosts: tuple[Host, ...]
    veths: tuple[Veth, ...]
    bridges: tuple[ovs.BridgeSpec, ...]


def plan_lab(topology: Topology) -> LabPlan:
    """What to create for ``topology``: pure, no system access."""
    veths = []
    for link in topology.links:
        # A host end goes in the host's namespace, so the root end is the switch's.
        a, b = (link.b, link.a) if link.a.is_host else (link.a, link.b)
        _, ifname = topology.interface(a)
        peer_netns, peer = topology.interface(b)
        veths.append(Veth(link.name, ifname, peer, peer_netns))
    bridges = tuple(
        ovs.BridgeSpec(s.name, s.dpid, s.controller,
                       tuple((s.port_ifname(port), port) for port in sorted(topology.ports(s.name))))
        for s in topology.switches)
    return LabPlan(topology.hosts, tuple(veths), bridges)


class Lab(Lifecycle):
    """A running lab: ``async with Lab(topology) as lab:`` builds it and always removes it.

    ``start()``/``stop()`` do the same without a ``with`` block (``routeflow lab up``).
    """

    def __init__(self, topology: Topology, state_path: Path | None = DEFAULT_STATE) -> None:
        self.topology = topology
        self.plan = plan_lab(topology)
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
        log.info("lab up: %d switches, %d hosts, %d links", len(self.plan.bridges), len(self.plan.hosts),
                 len(self.plan.veths))

    async def stop(self) -> None:
        """Remove everything this lab created; raise LabError if something stays."""
        await _remove_all(self.record)

    async def _check_free(self) -> None:
        taken = [f"namespace {h.name}" for h in self.plan.hosts if links.netns_exists(h.name)]
        bridges = set(await ovs.list_bridges())
        taken += [f"bridge {b.name}" for b in self.plan.bridges if b.name in bridges]
        root_ends = [v.ifname for v in self.plan.veths] + [v.peer for v in self.plan.veths if v.peer_netns is None]
        taken += [f"interface {name}" for name in await links.existing_links(root_ends)]
        if taken:
            raise LabError(f"cannot build the lab from {self.topology.source}: already in use: {', '.join(taken)} "
                           "(is another lab or test running? `routeflow lab down` removes a previous lab)")

    async def _create(self) -> None:
        for host in self.plan.hosts:
            self.record.add(Resource("netns", host.name, host.name))
            await links.create_netns(host.name)
        for veth in self.plan.veths:
            self.record.add(Resource("link", veth.ifname, veth.link))
            await links.add_veth(veth.ifname, veth.peer, veth.peer_netns)
        for host in self.plan.hosts:
            await links.add_addresses(host.name, Host.ifname, host.addresses)
            for gateway in host.gateways:
                await links.add_default_route(host.name, gateway)
        for bridge in self.plan.bridges:
            self.record.add(Resource("bridge", bridge.name, bridge.name))
            await ovs.add_bridge(bridge)

    async def set_link(self, spec: str, up: bool) -> Link:
        """Bring link ``spec`` (a link name or an endpoint) down or up, both ends."""
        return await _set_link(self.topology, spec, up)


async def _set_link(topology: Topology, spec: str, up: bool) -> Link:
    try:
        link = topology.find_link(spec)
    except KeyError as exc:
        raise LabError(str(exc.args[0])) from exc
    for end in link.ends:
        namespace, ifname = topology.interface(end)
        await links.set_link_state(ifname, up, namespace)
    log.info("link %s %s", link.name, "up" if up else "down")
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


def set_link(spec: str, up: bool, state_path: str | Path = DEFAULT_STATE) -> Link:
    """Cut (``up=False``) or restore a link of the lab that is up, by name or endpoint."""
    path = Path(state_path)
    if not path.exists():
        raise LabError(f"no lab is up (no state file {path})")
    topology = load_topology(ResourceLog.load(path).meta["topology"])
    return asyncio.run(_set_link(topology, spec, up))


def host_exec(host: str, argv: Sequence[str], timeout: float | None = None,
              check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside host ``host``'s namespace; its output is captured as text."""
    return subprocess.run(links.netns_argv(host, argv), capture_output=True, text=True, timeout=timeout,
                          check=check)
