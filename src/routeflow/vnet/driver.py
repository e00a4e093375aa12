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
import os
import shutil
from pathlib import Path
from typing import Sequence

from routeflow.vnet import VnetError, frr, links, ovs
from routeflow.vnet.plan import DaemonPlan, VmPlan
from routeflow.vnet.resources import Resource, ResourceLog, is_running, process_record, read_pidfile, teardown

log = logging.getLogger("routeflow.vnet")

#: How long zebra may take to open its API socket.
ZEBRA_START_TIMEOUT = 10.0


class VmDriver(abc.ABC):
    """Creates, runs and removes VMs; methods raise VnetError when they fail.

    :meth:`destroy` must remove whatever :meth:`create` and
    :meth:`start_engine` made, even if they failed halfway.
    """

    @abc.abstractmethod
    async def create(self, vm: VmPlan) -> None:
        """Create the VM with its NICs, addressed and up, plugged into the RFVS."""

    @abc.abstractmethod
    async def start_engine(self, vm: VmPlan) -> None:
        """Start the VM's routing engine; return once it accepts its peers."""

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
            self.record.add(Resource("link", nic.host_ifname, vm.name))
            await links.add_veth(nic.host_ifname, nic.name, vm.netns, nic.mac)
            await links.add_addresses(vm.netns, nic.name, nic.addresses)
            self.record.add(Resource("port", nic.host_ifname, vm.name))
            await ovs.add_port(self.bridge, nic.host_ifname)
        log.info("VM %s: namespace with %d NICs on %s", vm.name, len(vm.nics), self.bridge)

    async def start_engine(self, vm: VmPlan) -> None:
        if vm.run_dir is None:
            return
        self.record.add(Resource("dir", str(vm.run_dir), vm.name))
        _prepare_run_dir(vm.run_dir, vm.engine_conf)
        for daemon in vm.daemons:
            await self._start_daemon(vm, daemon, vm.run_dir)
            if daemon.name == "zebra":
                await _wait_for_socket(frr.zserv_socket(vm.run_dir), ZEBRA_START_TIMEOUT, vm.name)
        log.info("VM %s: %s running", vm.name, ", ".join(d.name for d in vm.daemons))

    async def _start_daemon(self, vm: VmPlan, daemon: DaemonPlan, run_dir: Path) -> None:
        # Recorded by pidfile first: a crash before the pid is known still
        # leaves a record that finds the daemon.
        pending = self.record.add(Resource("process", str(daemon.pidfile), vm.name))
        output = run_dir / f"{daemon.name}.out"
        with output.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *links.netns_argv(vm.netns, daemon.argv),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
            returncode = await proc.wait()
        pid = read_pidfile(str(daemon.pidfile))
        if returncode != 0 or pid is None:
            raise VnetError(f"VM {vm.name}: {daemon.name} did not start (exit {returncode}): "
                            f"{output.read_text(errors='replace').strip()[-500:]}")
        self.record.update(pending, process_record(str(daemon.pidfile), vm.name, pid))

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


def _prepare_run_dir(run_dir: Path, conf: str) -> None:
    """A fresh run directory holding ``frr.conf``, all owned by the FRR user."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "frr.conf").write_text(conf)
    try:
        for path in (run_dir, run_dir / "frr.conf"):
            shutil.chown(path, frr.FRR_USER, frr.FRR_USER)
    except LookupError as exc:
        raise VnetError(f"user {frr.FRR_USER!r} does not exist: is FRR installed?") from exc
    os.chmod(run_dir, 0o755)


async def _wait_for_socket(path: Path, timeout: float, vm: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        if loop.time() > deadline:
            raise VnetError(f"VM {vm}: zebra did not open {path} within {timeout:.0f} s")
        await asyncio.sleep(0.02)
