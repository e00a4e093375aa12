"""A local etcd for a server pair: one member, or a cluster of three on loopback.

``routeflow etcd start [--members 3]`` starts Debian's ``etcd`` (package
``etcd-server``) on 127.0.0.1 in the background, its data under ``--dir``
(default /run/routeflow/etcd), and prints the endpoints for the config's
``store.endpoints``; ``routeflow etcd stop`` stops it and removes its data. The
tests use :class:`LocalEtcd` as a context manager, which removes everything on
exit, failure included.

The members run with a 50 ms heartbeat and a 500 ms election timeout (loopback:
no network delay to allow for), which lets etcd grant leases of 1 s (its
shortest lease is 1.5 election timeouts) and checks them promptly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("routeflow.server.etcd")

DEFAULT_DIR = Path("/run/routeflow/etcd")
#: Client ports from here (member i: BASE + 2i), peer ports just above each.
BASE_PORT = 23790
ETCD = "etcd"
HEARTBEAT_MS = 50
ELECTION_MS = 500


@dataclass(frozen=True)
class Member:
    name: str
    client_port: int
    peer_port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


class LocalEtcd:
    """An etcd cluster of ``members`` on loopback, its data under ``directory``."""

    def __init__(self, directory: Path = DEFAULT_DIR, members: int = 1, base_port: int = BASE_PORT) -> None:
        self.directory = Path(directory)
        self.members = [Member(f"m{i}", base_port + 2 * i, base_port + 2 * i + 1) for i in range(members)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(m.endpoint for m in self.members)

    def __enter__(self) -> LocalEtcd:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0, detach: bool = False) -> None:
        """Start every member and wait until the cluster answers; raises RuntimeError if not."""
        if shutil.which(ETCD) is None:
            raise RuntimeError("etcd is not installed (Debian package etcd-server)")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            data = self.directory / member.name
            argv = [ETCD, "--name", member.name, "--data-dir", str(data),
                    "--listen-client-urls", member.endpoint, "--advertise-client-urls", member.endpoint,
                    "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"routeflow-{os.getpid()}",
                    "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
                    "--log-outputs", str(self.directory / f"{member.name}.log"), "--logger", "zap"]
            self.processes[member.name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=detach)
        (self.directory / "members.json").write_text(json.dumps(
            {"pids": {name: p.pid for name, p in self.processes.items()}, "endpoints": list(self.endpoints)}))
        deadline = time.monotonic() + timeout
        while not self.healthy():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"etcd member {name} exited with {process.returncode}; "
                                       f"see {self.directory / (name + '.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd not healthy within {timeout:g} s; see {self.directory}")
            time.sleep(0.1)
        log.info("etcd up: %s", ",".join(self.endpoints))

    def healthy(self, member: Member | None = None) -> bool:
        """Whether ``member`` (any, if None) says the cluster is healthy (it has a leader)."""
        for m in [member] if member else self.members:
            if member is None and m.name in self.processes and self.processes[m.name].poll() is not None:
                continue
            try:
                with urllib.request.urlopen(f"{m.endpoint}/health", timeout=1) as reply:
                    if json.loads(reply.read()).get("health") == "true":
                        return True
            except (OSError, ValueError):
                continue
        return False

    def kill(self, name: str) -> None:
        """``kill -9`` member ``name``, as a crash would."""
        process = self.processes[name]
        process.kill()
        process.wait(10)

    def stop(self) -> None:
        """Stop every member and remove the data directory."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()
        stop_recorded(self.directory)


def stop_recorded(directory: Path = DEFAULT_DIR) -> bool:
    """Stop the members a ``routeflow etcd start`` recorded in ``directory`` and remove
    it; False if nothing was there."""
    record = Path(directory) / "members.json"
    if not Path(directory).exists():
        return False
    if record.exists():
        pids = json.loads(record.read_text()).get("pids", {})
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                if _is_etcd(pid):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(_is_etcd(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids.values():  # one that ignored SIGTERM
            with contextlib.suppress(ProcessLookupError):
                if _is_etcd(pid):
                    os.kill(pid, signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)
    return True


def _is_etcd(pid: int) -> bool:
    """Whether ``pid`` is a running etcd (not a pid reused since it was recorded)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == ETCD and \
            "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[:1]
    except OSError:
        return False
