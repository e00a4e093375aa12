"""VM drivers: how one planned VM is created, run and removed.

:class:`VmDriver` is the interface the virtual environment uses, so that
LXC containers or libvirt guests can follow; :class:`NamespaceDriver` runs a
VM as a Linux network namespace ("lightweight VM") whose NICs are veths
plugged into the RFVS.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Sequence

from routeflow.vnet import VnetError, engine, links, ovs
from routeflow.vnet.links import IfAddress
from routeflow.vnet.plan import NicPlan, VmPlan
from routeflow.vnet.resources import Resource, ResourceLog, is_running, teardown

log = logging.getLogger("routeflow.vnet")


class VmDriver(abc.ABC):
    """Creates, runs and removes VMs; methods raise VnetError when they fail.

    :meth:`destroy` must remove whatever :meth:`create` and
    :meth:`start_engine` made, even if they failed halfway.
    """

    @abc.abstractmethod
    async def create(self, vm: VmPlan) -> None:
        """Create the VM with its NICs, addressed and up, plugged into the RFVS."""

    @abc.abstractmethod
    async def add_nic(self, vm: VmPlan, nic: NicPlan) -> None:
        """Give the running VM one more NIC, addressed and up, plugged into the RFVS."""

    @abc.abstractmethod
    async def remove_nic(self, vm: VmPlan, nic: NicPlan) -> None:
        """Unplug NIC ``nic`` of running VM ``vm`` from the RFVS and delete it."""

    @abc.abstractmethod
    async def readdress(self, vm: VmPlan, ifname: str, old: Sequence[IfAddress], new: Sequence[IfAddress]) -> None:
        """Make the addresses of ``ifname`` (a NIC, or ``lo``) of running VM ``vm`` ``new`` instead of ``old``."""

    @abc.abstractmethod
    async def set_mac(self, vm: VmPlan, ifname: str, mac: str) -> None:
        """Give NIC ``ifname`` of running VM ``vm`` the MAC address ``mac``."""

    @abc.abstractmethod
    async def start_engine(self, vm: VmPlan) -> None:
        """Start the VM's routing engine; return once it accepts its peers."""

    @abc.abstractmethod
    async def reload_engine(self, vm: VmPlan) -> None:
        """Have the VM's running engine take its config as planned now, with no restart."""

    @abc.abstractmethod
    async def start_client(self, vm: VmPlan, argv: Sequence[str]) -> asyncio.subprocess.Process:
        """Start ``argv`` (the RF-Client) inside the VM; the caller supervises it."""

    @abc.abstractmethod
    async def stop(self, vm: VmPlan) -> None:
        """Stop every process running in the VM (engine and client)."""

    @abc.abstractmethod
    async def destroy(self, vm: VmPlan) -> None:
        """Stop the VM and remove everything created for it."""

    @abc.abstractmethod
    def is_alive(self, vm: VmPlan) -> bool:
        """Whether the VM exists and its engine's daemons all run."""


class NamespaceDriver(VmDriver):
    """VMs as network namespaces on the RFVS bridge ``bridge``.

    Everything created is recorded in ``record`` (owner: the VM's name)
    before it is created, so :meth:`destroy` or a later stale clean-up
    removes exactly that.
    """

    def __init__(self, bridge: str, record: ResourceLog) -> None:
        self.bridge = bridge
        self.record = record

    async def create(self, vm: VmPlan) -> None:
        self.record.add(Resource("netns", vm.netns, vm.name))
        await links.create_netns(vm.netns)
        await links.set_sysctls(vm.netns, dict(vm.sysctls))
        await links.add_addresses(vm.netns, "lo", vm.loopback)
        for nic in vm.nics:
            await self.add_nic(vm, nic)
        log.info("VM %s: namespace with %d NICs on %s", vm.name, len(vm.nics), self.bridge)

    async def add_nic(self, vm: VmPlan, nic: NicPlan) -> None:
        self.record.add(Resource("link", nic.host_ifname, vm.name))
        await links.add_veth(nic.host_ifname, nic.name, vm.netns, nic.mac)
        await links.add_addresses(vm.netns, nic.name, nic.addresses)
        self.record.add(Resource("port", nic.host_ifname, vm.name))
        await ovs.add_port(self.bridge, nic.host_ifname)

    async def remove_nic(self, vm: VmPlan, nic: NicPlan) -> None:
        for resource in self.record.of(vm.name):
            if resource.kind in ("port", "link") and resource.name == nic.host_ifname:
                self.record.discard(resource)
        await ovs.del_port(nic.host_ifname)
        await links.delete_link(nic.host_ifname)

    async def readdress(self, vm: VmPlan, ifname: str, old: Sequence[IfAddress], new: Sequence[IfAddress]) -> None:
        await links.remove_addresses(vm.netns, ifname, [a for a in old if a not in new])
        await links.add_addresses(vm.netns, ifname, [a for a in new if a not in old])

    async def set_mac(self, vm: VmPlan, ifname: str, mac: str) -> None:
        await links.set_mac(vm.netns, ifname, mac)

    async def start_engine(self, vm: VmPlan) -> None:
        if vm.engine_run is not None:
            await engine.start_engine(vm.netns, f"VM {vm.name}", vm.engine_run, self.record, owner=vm.name)

    async def reload_engine(self, vm: VmPlan) -> None:
        if vm.engine_run is not None:
            await engine.reload_engine(vm.netns, f"VM {vm.name}", vm.engine_run)

    async def start_client(self, vm: VmPlan, argv: Sequence[str]) -> asyncio.subprocess.Process:
        # `ip netns exec` execs the command: the process handle is the client's.
        # Its own session: a Ctrl-C meant for the server does not reach it; the
        # server stops its clients itself, after the last word with them.
        return await asyncio.create_subprocess_exec(*links.netns_argv(vm.netns, argv),
                                                    stdin=asyncio.subprocess.DEVNULL, start_new_session=True)

    async def stop(self, vm: VmPlan) -> None:
        failures = await teardown(self.record, owner=vm.name, kinds=("process",))
        if failures:
            raise VnetError(f"VM {vm.name}: could not stop: {'; '.join(failures)}")

    async def destroy(self, vm: VmPlan) -> None:
        failures = await teardown(self.record, owner=vm.name)
        if failures:
            raise VnetError(f"VM {vm.name}: could not remove: {'; '.join(failures)}")
        log.info("VM %s removed", vm.name)

    def is_alive(self, vm: VmPlan) -> bool:
        running = {r.name for r in self.record.of(vm.name, "process") if is_running(r)}
        return links.netns_exists(vm.netns) and all(str(d.pidfile) in running for d in vm.daemons)
