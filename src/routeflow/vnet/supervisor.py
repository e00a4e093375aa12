"""Supervision of what runs inside a VM: its RF-Client and its routing daemons.

Both are restarted with back-off when they exit, whether this process started
them or adopted them from a previous run (they are then not its children: a
pidfd says when one ends). What each restart does to routing is the engine's
affair and is documented in the README ("Restarts"): a protocol daemon that
dies takes its routes with it (zebra withdraws them) until it is back; zebra
keeps the kernel's routes for :data:`routeflow.vnet.frr.ZEBRA_RETAIN` s, and
the protocol daemons are started again after it, as watchfrr does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Sequence

from routeflow.vnet import VnetError, engine
from routeflow.vnet.driver import VmDriver
from routeflow.vnet.engine import DaemonPlan
from routeflow.vnet.plan import VmPlan
from routeflow.vnet.resources import (
    Resource,
    ResourceLog,
    process_record,
    running_record,
    stop_process,
    wait_exit,
)

log = logging.getLogger("routeflow.vnet")


def client_name(vm: str) -> str:
    """The record name of ``vm``'s RF-Client process."""
    return f"client:{vm}"


class ClientSupervisor:
    """Keeps one VM's RF-Client running: restarts it with back-off when it exits.

    The back-off doubles from ``min_backoff`` to ``max_backoff`` and starts
    over once a client has run for ``stable_after`` seconds. The client is
    one it started, or one a previous run started that it adopted.
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
        #: The adopted client's record while it runs (it is not our child).
        self.adopted: Resource | None = None
        #: How often the client was restarted after exiting.
        self.restarts = 0
        self._entry: Resource | None = None
        self._task: asyncio.Task[None] | None = None
        self._spawned_at = 0.0

    async def start(self) -> None:
        """Start the client, then keep it running in a background task."""
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name=f"rf-client-{self.vm.name}")

    async def adopt(self, client: Resource) -> None:
        """Keep running ``client``, the recorded RF-Client a previous run started: once
        it exits, a new one is started as after any exit."""
        self._spawned_at = asyncio.get_running_loop().time()
        self.adopted = self._entry = client
        self._task = asyncio.create_task(self._supervise(), name=f"rf-client-{self.vm.name}")

    @property
    def pid(self) -> int | None:
        """The pid of the running client, if any."""
        if self.adopted is not None:
            return self.adopted.pid
        proc = self.process
        return proc.pid if proc is not None and proc.returncode is None else None

    async def _spawn(self) -> None:
        self._spawned_at = asyncio.get_running_loop().time()
        try:
            self.process = await self.driver.start_client(self.vm, self.argv)
        except OSError as exc:
            log.warning("VM %s: RF-Client could not start: %s", self.vm.name, exc)
            self.process = None
            return
        self._entry = self.record.add(process_record(client_name(self.vm.name), self.vm.name, self.process.pid))
        log.info("VM %s: RF-Client started (pid %d)", self.vm.name, self.process.pid)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.min_backoff
        while True:
            if self.process is not None:
                returncode = await self.process.wait()
                self._forget()
                log.warning("VM %s: RF-Client exited with %s", self.vm.name, returncode)
            elif self.adopted is not None:
                await wait_exit(self.adopted)
                log.warning("VM %s: the adopted RF-Client (pid %s) exited", self.vm.name, self.adopted.pid)
                self.adopted = None
                self._forget()
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
        await self.leave()
        proc = self.process
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        elif self.adopted is not None:
            await stop_process(self.adopted, timeout)
        self._forget()

    async def leave(self) -> None:
        """Stop supervising, leaving the client running and recorded."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class EngineSupervisor:
    """Keeps one VM's routing daemons running: a daemon that exits is started again,
    with its own command line and pidfile, after a back-off that doubles from
    ``min_backoff`` to ``max_backoff`` (and starts over once it has run for
    ``stable_after`` s).

    When zebra exits, the VM's other FRR daemons are restarted after it, as
    watchfrr does: FRR 8.4's protocol daemons reconnect to a new zebra but do
    not give it their routes again. A daemon an operator started again by hand
    (its pidfile names a live process running that pidfile) is watched, not
    started twice.
    """

    def __init__(self, vm: VmPlan, record: ResourceLog, min_backoff: float = 0.5, max_backoff: float = 30.0,
                 stable_after: float = 10.0) -> None:
        self.vm = vm
        self.record = record
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        #: Restarts per daemon name.
        self.restarts: dict[str, int] = {d.name: 0 for d in vm.daemons}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Watch the daemons (running, started or adopted) from now on."""
        if self.vm.engine_run is not None and self.vm.daemons:
            self._task = asyncio.create_task(self._supervise(), name=f"engine-{self.vm.name}")

    async def stop(self) -> None:
        """Stop watching (before the VM's teardown ends its daemons)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _entry(self, daemon: DaemonPlan) -> Resource | None:
        name = str(daemon.pidfile)
        return next((r for r in self.record.of(self.vm.name, "process") if r.name == name), None)

    def _running(self, daemon: DaemonPlan) -> Resource | None:
        """The daemon's record as it runs now (updated if restarted by hand), or None."""
        entry = self._entry(daemon)
        current = running_record(entry) if entry is not None else None
        if entry is not None and current is not None and current is not entry:
            self.record.update(entry, current)
        return current

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.min_backoff
        started = loop.time()
        while True:
            watched = {d.name: r for d in self.vm.daemons if (r := self._running(d)) is not None}
            dead = [d for d in self.vm.daemons if d.name not in watched]
            if not dead:
                waits = {asyncio.ensure_future(wait_exit(r)): name for name, r in watched.items()}
                try:
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for future in waits:
                        future.cancel()
                for future in done:
                    name = waits[future]
                    log.warning("VM %s: %s (pid %s) exited", self.vm.name, name, watched[name].pid)
                continue  # read the pidfiles again: one may have been started by hand meanwhile
            if loop.time() - started >= self.stable_after:
                backoff = self.min_backoff
            log.info("VM %s: starting %s again in %g s", self.vm.name, ", ".join(d.name for d in dead), backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            started = loop.time()
            await self._restart([d for d in dead if self._running(d) is None])

    async def _restart(self, dead: list[DaemonPlan]) -> None:
        plan = self.vm.engine_run
        assert plan is not None
        restart = list(dead)
        if any(d.name == "zebra" for d in dead):
            restart = list(plan.daemons)  # zebra first (plan order), then every daemon that uses it
        for daemon in restart:
            entry = self._entry(daemon)
            if entry is not None:
                await stop_process(entry)
                self.record.discard(entry)
            try:
                await engine.start_daemon(self.vm.netns, f"VM {self.vm.name}", self.vm.name, daemon, plan.run_dir,
                                          self.record)
            except VnetError as exc:
                log.error("%s", exc)
                return  # the next round finds it dead and tries again, later
            self.restarts[daemon.name] += 1
            log.warning("VM %s: %s started again (pid %s)", self.vm.name, daemon.name,
                        (self._running(daemon) or Resource("process", "", "")).pid)
