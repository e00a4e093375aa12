"""The virtual environment of a config: RFVS, VMs, engines and supervised RF-Clients.

The RF-Server runs it inside its event loop::

    async with VirtualEnvironment(config) as venv:
        ...   # VMs up, engines running, RF-Clients supervised

Leaving the block, normally or not, tears everything down; so does a
failing bring-up. What was created is recorded in a state file, and a
later run (or :func:`cleanup_stale`) removes the leftovers of one that
crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
from pathlib import Path
from typing import IO, Callable, Sequence

from routeflow.config.schema import Config
from routeflow.private import SHARED_DIR_MODE, private_dir
from routeflow.protocol.auth import KEY_DIR
from routeflow.vnet import VnetError, frr, links, ovs
from routeflow.vnet.driver import NamespaceDriver, VmDriver
from routeflow.vnet.plan import VmPlan, client_argv, client_server_address, plan_vnet
from routeflow.vnet.resources import Lifecycle, Resource, ResourceLog, process_record, teardown

log = logging.getLogger("routeflow.vnet")

DEFAULT_STATE = Path("/run/routeflow/vnet.json")
#: The RF-Client command for a VM name (run inside that VM).
ClientArgv = Callable[[str], Sequence[str]]
#: Makes the VM driver from the RFVS bridge name and the record to log into.
DriverFactory = Callable[[str, ResourceLog], VmDriver]


class ClientSupervisor:
    """Keeps one VM's RF-Client running: restarts it with back-off when it exits.

    The back-off doubles from ``min_backoff`` to ``max_backoff`` and starts
    over once a client has run for ``stable_after`` seconds.
    """

    def __init__(self, vm: VmPlan, argv: Sequence[str], driver: VmDriver, record: ResourceLog,
                 min_backoff: float = 0.5, max_backoff: float = 30.0, stable_after: float = 10.0) -> None:
        self.vm = vm
        self.argv = list(argv)
        self.driver = driver
        self.record = record
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.process: asyncio.subprocess.Process | None = None
        #: How often the client was restarted after exiting.
        self.restarts = 0
        self._entry: Resource | None = None
        self._task: asyncio.Task[None] | None = None
        self._spawned_at = 0.0

    async def start(self) -> None:
        """Start the client, then keep it running in a background task."""
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name=f"rf-client-{self.vm.name}")

    async def _spawn(self) -> None:
        self._spawned_at = asyncio.get_running_loop().time()
        try:
            self.process = await self.driver.start_client(self.vm, self.argv)
        except OSError as exc:
            log.warning("VM %s: RF-Client could not start: %s", self.vm.name, exc)
            self.process = None
            return
        self._entry = self.record.add(process_record(f"client:{self.vm.name}", self.vm.name, self.process.pid))
        log.info("VM %s: RF-Client started (pid %d)", self.vm.name, self.process.pid)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.min_backoff
        while True:
            if self.process is not None:
                returncode = await self.process.wait()
                self._forget()
                log.warning("VM %s: RF-Client exited with %s", self.vm.name, returncode)
            if loop.time() - self._spawned_at >= self.stable_after:
                backoff = self.min_backoff
            log.info("VM %s: restarting the RF-Client in %g s", self.vm.name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            self.restarts += 1
            await self._spawn()

    def _forget(self) -> None:
        if self._entry is not None:
            self.record.discard(self._entry)
            self._entry = None

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop supervising and end the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self.process
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        self._forget()


class VirtualEnvironment(Lifecycle):
    """The RFVS bridge and the VMs of ``config``, their engines and RF-Clients.

    ``client_argv`` gives the RF-Client command of a VM (default:
    ``python -m routeflow client`` on the server's Unix socket);
    ``start_clients=False`` starts none (the VMs are then without clients).
    ``driver`` makes the VM driver (default: network namespaces). Only one
    virtual environment may use a state file at a time (it is locked), and
    VM engines keep their files under ``run_root/<vm>/``.
    """

    def __init__(self, config: Config, *, state_path: Path = DEFAULT_STATE,
                 run_root: Path = frr.DEFAULT_RUN_ROOT, client_argv: ClientArgv | None = None,
                 start_clients: bool = True, driver: DriverFactory = NamespaceDriver,
                 min_backoff: float = 0.5, max_backoff: float = 30.0, keys: Path = KEY_DIR) -> None:
        self.config = config
        #: Where the RFVS's TLS credential is, if its controller target is ``ssl:``.
        self.keys = keys
        self.plan = plan_vnet(config, run_root)
        self.state_path = Path(state_path)
        self.record = ResourceLog(self.state_path)
        self.driver = driver(self.plan.bridge.name, self.record)
        if client_argv is None:
            client_argv = default_client_argv(config)
        self._client_argv = client_argv if start_clients else None
        self._backoff = (min_backoff, max_backoff)
        self.supervisors: dict[str, ClientSupervisor] = {}
        self._lock: IO[str] | None = None

    async def start(self) -> None:
        """Bring everything up; on failure tear down what was made and re-raise."""
        self._lock = _acquire_lock(self.state_path)
        try:
            if await cleanup_stale(self.state_path, locked=True):
                log.warning("removed the leftovers of a previous run recorded in %s", self.state_path)
            await ovs.check_running()
            await self._check_free()
            if self.plan.bridge.controller.startswith("ssl:"):
                self.record.add(Resource("ssl", "openvswitch", "rfvs"))
                await ovs.set_switch_credential(self.keys)
            self.record.add(Resource("bridge", self.plan.bridge.name, "rfvs"))
            await ovs.add_bridge(self.plan.bridge)
            for vm in self.plan.vms:
                await self.driver.create(vm)
                await self.driver.start_engine(vm)
            if self._client_argv is not None:
                for vm in self.plan.vms:
                    supervisor = ClientSupervisor(vm, self._client_argv(vm.name), self.driver, self.record,
                                                  *self._backoff)
                    self.supervisors[vm.name] = supervisor
                    await supervisor.start()
        except BaseException:
            log.error("bringing up the virtual environment failed; removing what was created")
            try:
                await self.stop()
            except VnetError as exc:
                log.error("%s", exc)
            raise
        log.info("virtual environment up: %d VMs on %s", len(self.plan.vms), self.plan.bridge.name)

    async def stop(self) -> None:
        """Stop the clients, then remove the VMs and the RFVS; raise VnetError if something stays."""
        for supervisor in self.supervisors.values():
            await supervisor.stop()
        self.supervisors.clear()
        failures = []
        for vm in reversed(self.plan.vms):
            try:
                await self.driver.destroy(vm)
            except VnetError as exc:
                failures.append(str(exc))
        failures += await teardown(self.record)
        if not failures and self._lock is not None:  # the file is ours only while we hold the lock
            self.record.remove_file()
        _release_lock(self._lock)
        self._lock = None
        if failures:
            raise VnetError("virtual environment not fully removed: " + "; ".join(failures))
        log.info("virtual environment down")

    async def _check_free(self) -> None:
        taken = [f"namespace {vm.netns}" for vm in self.plan.vms if links.netns_exists(vm.netns)]
        if self.plan.bridge.name in await ovs.list_bridges():
            taken.append(f"bridge {self.plan.bridge.name}")
        names = [nic.host_ifname for vm in self.plan.vms for nic in vm.nics]
        taken += [f"interface {name}" for name in await links.existing_links(names)]
        if taken:
            raise VnetError(f"cannot create the VMs of {self.config.source or 'the config'}: already in use: "
                            f"{', '.join(taken)} (another routeflow server, or a lab using these names?)")

    def client_pid(self, vm: str) -> int | None:
        """The pid of ``vm``'s running RF-Client, if any."""
        supervisor = self.supervisors.get(vm)
        proc = supervisor.process if supervisor else None
        return proc.pid if proc is not None and proc.returncode is None else None

    def is_alive(self, vm: str) -> bool:
        return self.driver.is_alive(self.plan.vm(vm))


def default_client_argv(config: Config, keys: Path = KEY_DIR) -> ClientArgv:
    """``python -m routeflow client --vm NAME --server ADDR --keys DIR`` for the VMs of ``config``."""
    return functools.partial(client_argv, server=client_server_address(config), keys=keys)


async def cleanup_stale(state_path: Path = DEFAULT_STATE, locked: bool = False) -> bool:
    """Remove what a crashed run recorded in ``state_path``; False if nothing was recorded.

    Takes the state file's lock (unless the caller holds it), so a running
    virtual environment is never cleaned up under its feet.
    """
    state_path = Path(state_path)
    lock = None if locked else _acquire_lock(state_path)
    try:
        if not state_path.exists():
            return False
        record = ResourceLog.load(state_path)
        failures = await teardown(record)
        if failures:
            raise VnetError(f"stale resources in {state_path} not removed: " + "; ".join(failures))
        record.remove_file()
        return True
    finally:
        _release_lock(lock)


def _acquire_lock(state_path: Path) -> IO[str]:
    path = state_path.with_suffix(".lock")
    private_dir(path.parent, mode=SHARED_DIR_MODE)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise VnetError(f"another routeflow virtual environment is running (lock {path} is held)") from None
    return handle


def _release_lock(handle: IO[str] | None) -> None:
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
