"""Where the RF-Server's VM changes are carried out: the virtual environment, as a
:class:`VmHost`, and the work under way on it, one VM's changes in order (:class:`VmWork`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from routeflow.config.schema import VmConfig
from routeflow.server.core_vms import VmChange

log = logging.getLogger("routeflow.server")

#: What each kind of change does to a VM, for the log.
DONE = {"add": "made", "update": "updated", "remove": "removed"}


class VmHost(Protocol):
    """Where the VMs the server makes, changes and removes at runtime live: the virtual environment."""

    async def add(self, vm: VmConfig) -> None:
        """Make and start VM ``vm``: its namespace, NICs, engine and RF-Client."""

    async def update(self, vm: VmConfig) -> None:
        """Make running VM ``vm.name`` what ``vm`` says: its NICs, their addresses, its
        loopback, and its engine's configuration, applied to the running engine."""

    async def remove(self, name: str) -> None:
        """Stop and remove VM ``name``."""


class VmWork:
    """The VM changes under way on ``host`` (None: the server runs no VMs, and a change is
    only recorded). Changes of one VM run in order: a VM made again right after it was
    removed waits for the removal; those of different VMs run side by side."""

    def __init__(self) -> None:
        self.host: VmHost | None = None
        #: The latest change under way of each VM.
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def submit(self, change: VmChange) -> None:
        """Carry ``change`` out on the host, after the changes of the same VM before it."""
        if self.host is None:
            return
        host, name = self.host, change.vm.name
        previous = self._tasks.get(name)

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                if change.kind == "add":
                    await host.add(change.vm)
                elif change.kind == "update":
                    await host.update(change.vm)
                else:
                    await host.remove(name)
            except Exception as exc:  # noqa: BLE001 - one VM failing to come up costs that VM only
                log.error("VM %s could not be %s: %s", name, DONE[change.kind], exc)
        task = self._tasks[name] = asyncio.get_running_loop().create_task(run())
        task.add_done_callback(lambda done: self._tasks.pop(name, None) if self._tasks.get(name) is done else None)

    async def settled(self) -> None:
        """Wait for every change under way (and those submitted meanwhile)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
