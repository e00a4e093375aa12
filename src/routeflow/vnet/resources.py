"""A durable record of what was created, and teardown by that record.

Every namespace, veth, bridge, directory and process the lab or the virtual
environment creates is recorded here *before* it is created, and the record
is saved to a JSON state file at once. Teardown then removes exactly the
recorded objects, in a safe order, and tolerates ones that never came to
exist: a half-finished bring-up, a crashed process or ``routeflow lab down``
run from another process all clean up the same way, without guessing by name
patterns or ``pkill -f``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, Sequence

from routeflow.private import SHARED_DIR_MODE, private_dir, write_private
from routeflow.vnet import VnetError, links, ovs

log = logging.getLogger("routeflow.vnet")

#: ``ssl``: the TLS credential Open vSwitch presents to ``ssl:`` controllers.
Kind = Literal["process", "port", "bridge", "ssl", "link", "netns", "dir"]
#: Teardown order: processes hold namespaces and files; ports go before their
#: veths (or OVS keeps ports whose interface is missing); deleting a
#: namespace also deletes its veth ends.
TEARDOWN_ORDER: tuple[Kind, ...] = ("process", "port", "bridge", "ssl", "link", "netns", "dir")
STOP_TIMEOUT = 3.0


@dataclass(frozen=True)
class Resource:
    """One created object: its kind, its name (or pidfile, or path) and its owner."""

    kind: Kind
    name: str
    #: Which part of the network it belongs to (a VM, a host, a switch, ``rfvs``).
    owner: str = ""
    #: For processes: the pid and its start time (clock ticks since boot), which
    #: together identify the process even after the pid is reused.
    pid: int | None = None
    start_time: int | None = None


class ResourceLog:
    """The resources created so far, saved to ``path`` (if given) on every change."""

    def __init__(self, path: Path | None = None, resources: list[Resource] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.path = path
        self.resources: list[Resource] = list(resources or [])
        #: Free-form facts (JSON) for whoever reads the file later (e.g. the topology file).
        self.meta: dict[str, Any] = dict(meta or {})

    @classmethod
    def load(cls, path: Path) -> ResourceLog:
        """Read a state file; raise VnetError if it is unreadable."""
        try:
            document = json.loads(path.read_text())
            resources = [Resource(**item) for item in document["resources"]]
            meta = dict(document.get("meta", {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VnetError(f"cannot read state file {path}: {exc}") from exc
        return cls(path, resources, meta)

    def add(self, resource: Resource) -> Resource:
        self.resources.append(resource)
        self.save()
        return resource

    def update(self, old: Resource, new: Resource) -> None:
        self.resources[self.resources.index(old)] = new
        self.save()

    def discard(self, resource: Resource) -> None:
        if resource in self.resources:
            self.resources.remove(resource)
            self.save()

    def of(self, owner: str | None = None, kind: Kind | None = None) -> list[Resource]:
        return [r for r in self.resources
                if (owner is None or r.owner == owner) and (kind is None or r.kind == kind)]

    def save(self) -> None:
        if self.path is None:
            return
        private_dir(self.path.parent, mode=SHARED_DIR_MODE)
        write_private(self.path, json.dumps({"meta": self.meta, "resources": [asdict(r) for r in self.resources]},
                                            indent=1))

    def remove_file(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def teardown(record: ResourceLog, owner: str | None = None,
                   kinds: tuple[Kind, ...] = TEARDOWN_ORDER) -> list[str]:
    """Remove the recorded resources (of one owner, or all), newest first per kind.

    Every removal is attempted even if others fail; returns the failures.
    """
    failures: list[str] = []
    for kind in (k for k in TEARDOWN_ORDER if k in kinds):
        for resource in reversed(record.of(owner, kind)):
            try:
                await _remove(resource)
            except Exception as exc:  # whatever went wrong, keep removing the rest
                log.warning("could not remove %s %s: %s", resource.kind, resource.name, exc)
                failures.append(f"{resource.kind} {resource.name}: {exc}")
            else:
                record.discard(resource)
    return failures


async def missing(resources: Sequence[Resource]) -> list[str]:
    """Those of ``resources`` that no longer exist, as ``kind name``: a process that
    is not running (or whose pid was reused), a namespace, interface, port, bridge,
    directory or TLS setting that is gone."""
    kinds = {r.kind for r in resources}
    link_names = [r.name for r in resources if r.kind == "link"]
    present_links = set(await links.existing_links(link_names)) if link_names else set()
    ports = set((await ovs.vsctl("--bare", "--columns=name", "list", "Port")).split()) if "port" in kinds else set()
    bridges = set(await ovs.list_bridges()) if "bridge" in kinds else set()
    ssl = bool((await ovs.vsctl("get-ssl")).strip()) if "ssl" in kinds else False
    present = {
        "process": is_running,
        "port": lambda r: r.name in ports,
        "bridge": lambda r: r.name in bridges,
        "ssl": lambda r: ssl,
        "link": lambda r: r.name in present_links,
        "netns": lambda r: links.netns_exists(r.name),
        "dir": lambda r: Path(r.name).is_dir(),
    }
    return [f"{r.kind} {r.name}" for r in resources if not present[r.kind](r)]


async def _remove(resource: Resource) -> None:
    log.debug("removing %s %s", resource.kind, resource.name)
    if resource.kind == "process":
        await stop_process(resource)
    elif resource.kind == "port":
        await ovs.del_port(resource.name)
    elif resource.kind == "bridge":
        await ovs.del_bridge(resource.name)
    elif resource.kind == "ssl":
        await ovs.del_ssl()
    elif resource.kind == "link":
        await links.delete_link(resource.name)
    elif resource.kind == "netns":
        await links.remove_netns(resource.name)
    elif resource.kind == "dir":
        shutil.rmtree(resource.name, ignore_errors=True)


# --- processes ------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of ``pid`` from /proc; None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces or ')'; the fields after the last ')' are fixed.
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), None if no such process."""
    stat = _stat(pid)
    return stat[1] if stat else None


def process_record(name: str, owner: str, pid: int) -> Resource:
    """A record identifying the running process ``pid``."""
    return Resource("process", name, owner, pid, process_start_time(pid))


def read_pidfile(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _live_pid(resource: Resource) -> int | None:
    """The pid of the recorded process if it is still the same process, else None.

    A record made before its process wrote its pidfile has no pid, and a
    daemon restarted in place (by an operator, after a crash) has another
    one: the pid is then read from the pidfile (``name``) and accepted only
    if the process's command line names that pidfile, so a restarted routing
    daemon is stopped with its VM instead of outliving it.
    """
    if resource.pid is not None:
        # A zombie has exited: a daemon's parent (init, in a container perhaps
        # nothing) may never reap it.
        stat = _stat(resource.pid)
        if stat is not None and stat[0] != "Z" and resource.start_time in (None, stat[1]):
            return resource.pid
    pid = read_pidfile(resource.name)
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if resource.name.encode() in cmdline else None


def running_record(resource: Resource) -> Resource | None:
    """The record of the process ``resource`` names as it runs now, None if it is not
    running (or its pid was reused). A daemon restarted in place gets a record of its
    new pid and start time; otherwise ``resource`` itself is returned."""
    pid = _live_pid(resource)
    if pid is None:
        return None
    started = process_start_time(pid)
    if _gone(pid, started):
        return None
    return resource if pid == resource.pid else Resource("process", resource.name, resource.owner, pid, started)


def is_running(resource: Resource) -> bool:
    """Whether the recorded process is still alive (and not a reused pid)."""
    return running_record(resource) is not None


async def wait_exit(resource: Resource) -> None:
    """Return once the recorded process (by its pid and start time) has exited; at
    once if it is not running.

    For processes that are not our children (an RF-Client a previous run started):
    a pidfd says when the process ends without polling, and refers to that process
    alone, so a pid reused meanwhile is never waited on.
    """
    if resource.pid is None:
        return
    try:
        pidfd = os.pidfd_open(resource.pid)
    except ProcessLookupError:
        return
    try:
        # The pid may have been reused before the pidfd was opened: it must still be ours.
        if _gone(resource.pid, resource.start_time):
            return
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)


def _gone(pid: int, start_time: int | None) -> bool:
    """Whether ``pid`` has exited (or is a zombie, or was reused) since ``start_time``."""
    stat = _stat(pid)
    return stat is None or stat[0] == "Z" or stat[1] != start_time


async def stop_process(resource: Resource, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the recorded process, then SIGKILL it if it lingers."""
    pid = _live_pid(resource)
    if pid is None:
        return
    start_time = process_start_time(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _gone(pid, start_time):
                return
            await asyncio.sleep(0.05)
        if sig == signal.SIGTERM:
            log.warning("process %d (%s) ignored SIGTERM; killing it", pid, resource.name)
    raise VnetError(f"process {pid} ({resource.name}) did not exit")


class Lifecycle:
    """An async context manager over ``start()`` and ``stop()``.

    A failure while stopping is raised only if the block itself succeeded, so
    it never hides the exception that ended the block.
    """

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.stop()
        except VnetError as error:
            if exc is None:
                raise
            log.error("%s", error)
