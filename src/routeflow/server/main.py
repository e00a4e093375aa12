"""Running the RF-Server as a process: its VMs, its signals, its exit; and, in a
server pair (``store: {kind: etcd}``), its turn as standby and its fencing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Awaitable, Callable

from routeflow.config.schema import Config, StoreKind
from routeflow.protocol import auth
from routeflow.server.api import HttpApi
from routeflow.server.election import Election, Lease, Role, campaign, hold
from routeflow.server.service import RFServer

log = logging.getLogger("routeflow.server")

#: Exit status of a server that stopped serving because it lost the leadership.
EXIT_FENCED = 1
#: How long a new active server waits for its fenced predecessor to let go of the VMs.
VNET_LOCK_WAIT = 10.0


def default_server_id() -> str:
    """This server's id in its pair: unique per process (a restarted server is a new one)."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def serve(config: Config, ready: Callable[[], None] | None = None, keys: Path = auth.KEY_DIR,
                server_id: str | None = None) -> int:
    """Run the RF-Server (and, if configured, its VMs) until a signal; the peers' keys
    are in ``keys`` (made there if missing).

    SIGTERM or SIGINT: stop, removing the VMs. SIGHUP: read the config file again and
    apply what differs (:meth:`~routeflow.server.operations.Operations.reload`). SIGUSR1: stop, leaving the VMs (their
    engines and RF-Clients) running for the next server, which adopts them, as it
    does after a ``kill -9``: a restart that loses no adjacency and no flow.

    In a server pair it first stands by until it holds the leader key; active, it
    keeps its lease alive, and if it cannot (or the store refuses its NIB) it stops
    serving at once, leaves the VMs to its successor and returns (or exits with)
    EXIT_FENCED. Returns the exit status: 0, or EXIT_FENCED.
    """
    stop = asyncio.Event()
    leaving = False

    def leave() -> None:
        nonlocal leaving
        leaving = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, leave)

    store = lease = election = None
    if config.store.kind == StoreKind.ETCD:
        from routeflow.server.etcd_store import EtcdStore

        server_id = server_id or default_server_id()
        store = lease = EtcdStore(config.store.endpoints, server_id, config.store.lease_ttl, config.store.prefix)
        election = Election(server_id)
        log.info("server %s: standing by for the leadership (etcd %s)", server_id, ",".join(config.store.endpoints))
        if not await _first(campaign(lease, election), stop.wait()):
            log.info("standby stopping")
            return 0
        await _wait_vnet_free(config)
    server = RFServer(config, keys=keys, store=store, config_path=Path(config.source) if config.source else None)
    reloads: set[asyncio.Task[object]] = set()

    def reload() -> None:
        # It logs what it did or why it refused; the task is kept until it ends.
        task = loop.create_task(server.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    if config.manage_vms and config.templates:
        from routeflow.vnet.manager import made_vms

        server.core.readmit(made_vms(), asyncio.get_running_loop().time())
        server.config = server.core.config
    await server.start()
    api = HttpApi(server, config.http) if config.http.listen else None
    if api is not None:
        try:
            await api.start()
        except OSError:
            await server.stop()
            raise
    fenced = ""
    guard = None
    if lease is not None and election is not None:
        guard = asyncio.create_task(_guard(lease, election, server, leave))
    left = False
    try:
        if config.manage_vms:
            from routeflow.vnet.manager import VirtualEnvironment, default_client_argv

            running = server.config  # with the VMs made by the previous server, if any: adopted
            async with VirtualEnvironment(running, client_argv=default_client_argv(running, keys), keys=keys) as venv:
                server.vm_work.host = venv  # VMs for the switches that join, and reloads
                if ready:
                    ready()
                await stop.wait()
                server.vm_work.host = None
                await server.vm_work.settled()
                if leaving:
                    await venv.leave()
                    left = True
        else:
            if ready:
                ready()
            await stop.wait()
    finally:
        log.info("shutting down")
        if api is not None:
            await api.stop()
        if guard is not None:
            guard.cancel()
        await server.stop()
        if election is not None and lease is not None:
            fenced = election.reason if election.role is Role.FENCED else ""
            if not fenced:
                with contextlib.suppress(OSError):
                    await lease.resign()  # the standby need not wait for the lease to expire
    if left:
        # The RF-Clients this server started are its children: a normal exit would have
        # asyncio kill them as it closes their transports. They must outlive it.
        logging.shutdown()
        os._exit(EXIT_FENCED if fenced else 0)
    return EXIT_FENCED if fenced else 0


async def _first(work: Awaitable[object], stopped: Awaitable[object]) -> bool:
    """Run ``work`` until it ends (True) or ``stopped`` does first (False)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stopped)
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopper):
        pending.cancel()
    await asyncio.gather(task, stopper, return_exceptions=True)
    if task in done:
        task.result()  # its failure, if it failed
    return task in done


async def _guard(lease: Lease, election: Election, server: RFServer, leave: Callable[[], None]) -> None:
    """Stop serving the moment the leadership may be lost: the lease not confirmed in
    time (:func:`~routeflow.server.election.hold`) or a NIB write refused."""
    deposed = asyncio.create_task(server.deposed.wait())
    await _first(hold(lease, election), deposed)
    if server.deposed.is_set():
        election.deposed("the store refused a NIB write as not the leader's")
    election.fence(election.reason or "lost the leadership")
    log.error("fenced: %s; stopping at once, leaving the VMs to the active server", election.reason)
    server.fence()
    leave()


async def _wait_vnet_free(config: Config) -> None:
    """A fenced predecessor still leaving holds the VMs' lock for a moment: wait for it."""
    if not config.manage_vms:
        return
    from routeflow.vnet import VnetError
    from routeflow.vnet.manager import DEFAULT_STATE, _acquire_lock, _release_lock

    deadline = time.monotonic() + VNET_LOCK_WAIT
    while True:
        try:
            _release_lock(_acquire_lock(DEFAULT_STATE))
            return
        except VnetError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
