"""Running the RF-Server as a process: its VMs, its signals, its exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Callable

from routeflow.config.schema import Config
from routeflow.protocol import auth
from routeflow.server.api import HttpApi
from routeflow.server.service import RFServer

log = logging.getLogger("routeflow.server")


async def serve(config: Config, ready: Callable[[], None] | None = None, keys: Path = auth.KEY_DIR) -> None:
    """Run the RF-Server (and, if configured, its VMs) until a signal; the peers' keys
    are in ``keys`` (made there if missing).

    SIGTERM or SIGINT: stop, removing the VMs. SIGUSR1: stop, leaving the VMs (their
    engines and RF-Clients) running for the next server, which adopts them, as it
    does after a ``kill -9``: a restart that loses no adjacency and no flow.
    """
    server = RFServer(config, keys=keys)
    await server.start()
    api = HttpApi(server, config.http) if config.http.listen else None
    if api is not None:
        try:
            await api.start()
        except OSError:
            await server.stop()
            raise
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
    left = False
    try:
        if config.manage_vms:
            from routeflow.vnet.manager import VirtualEnvironment, default_client_argv

            async with VirtualEnvironment(config, client_argv=default_client_argv(config, keys), keys=keys) as venv:
                if ready:
                    ready()
                await stop.wait()
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
        await server.stop()
    if left:
        # The RF-Clients this server started are its children: a normal exit would have
        # asyncio kill them as it closes their transports. They must outlive it.
        logging.shutdown()
        os._exit(0)
