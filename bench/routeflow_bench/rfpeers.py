"""What the benchmarks that talk to the RF-Server as its peers share: a real RF-Server
process on loopback listeners, a fake controller that keeps the flow table the server's
TableMods make, and the routes a fake client feeds it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from routeflow.model import Fib, FlowKey, Interface, Neighbour, NextHop, PortDesc, Route
from routeflow.protocol.messages import (
    ControllerStats,
    DatapathJoin,
    DumpTable,
    FibSnapshot,
    Goodbye,
    StatsRequest,
    StatusReply,
    StatusRequest,
    TableDump,
    TableMod,
)
from routeflow.protocol.transport import Address, BlockingSession, parse_address
from routeflow_bench.common import Context

VM = "rA"
DPID = 1
PORTS = (PortDesc(1, "p1", "aa:00:00:00:00:01", True), PortDesc(2, "p2", "aa:00:00:00:00:02", True))
INTERFACES = (Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",)),
              Interface("eth2", "02:00:00:00:00:02", True, ("172.31.2.1/24",)))
NEIGHBOURS = (Neighbour("eth1", "172.31.1.2", "0a:00:00:00:00:01"),
              Neighbour("eth2", "172.31.2.2", "0a:00:00:00:00:02"))


def prefix(i: int) -> str:
    return f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"


def routes(n: int) -> list[Route]:
    """N /24 routes, a third each via eth1, via eth2 and ECMP over both."""
    hops = [(NextHop("eth1", "172.31.1.2"),), (NextHop("eth2", "172.31.2.2"),),
            (NextHop("eth1", "172.31.1.2"), NextHop("eth2", "172.31.2.2"))]
    return [Route(prefix(i), hops[i % 3], proto="bgp") for i in range(n)]


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of process ``pid`` so far (``/proc/PID/task/*/schedstat``,
    nanoseconds); NaN if unreadable."""
    try:
        return sum(int(p.read_text().split()[0]) for p in Path(f"/proc/{pid}/task").glob("*/schedstat")) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the server --------------------------------------------------------------------


@contextlib.contextmanager
def rf_server(ctx: Context, transports: tuple[str, ...] = ("tcp",), http: str | None = None,
              ) -> Iterator[tuple[dict[str, Address], Path, int]]:
    """A real RF-Server process with a loopback listener of each of ``transports`` (``tcp``,
    ``tls``), its HTTP surface on ``http`` (``HOST:PORT``; None: off), one VM ``rA`` (engine
    none) on datapath 1 and no VMs to manage; its addresses by transport, its key directory
    and its pid. Killed, and its key directory removed, on exit."""
    work = Path(tempfile.mkdtemp(prefix="routeflow-bench-server-"))
    addresses = {t: parse_address(f"{t}:127.0.0.1:{free_port()}") for t in transports}
    keys = work / "keys"
    config = {
        "manage_vms": False,
        "listen": [str(a) for a in addresses.values()],
        "http": {"listen": http or "off"},
        "vms": [{"name": VM, "dpid": DPID, "engine": "none", "interfaces": [
            {"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]},
            {"name": "eth2", "port": 2, "addresses": ["172.31.2.1/24"]}]}],
    }
    (work / "routeflow.yaml").write_text(yaml.safe_dump(config))
    log_path = ctx.run_dir / f"{'-'.join(transports)}-server.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "routeflow", "server", str(work / "routeflow.yaml"),
                                     "--keys", str(keys)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        for transport in transports:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the RF-Server exited {proc.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    BlockingSession(addresses[transport], "operator", "bench", keys=keys).close()
                    break
                except Exception as exc:  # noqa: BLE001 - not listening yet, keys not made yet
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the RF-Server does not serve {addresses[transport]}: {exc}") from None
                    time.sleep(0.05)
        yield addresses, keys, proc.pid
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


# --- fake peers ----------------------------------------------------------------------


class FakeController:
    """A controller that has joined datapath 1: answers DumpTable (an empty switch) and
    StatsRequest, and keeps the flow table the server's TableMods make, counting the flows
    of ``targets`` (route prefixes) in it. All reads and writes on its own thread."""

    def __init__(self, address: Address, keys: Path, targets: frozenset[str]) -> None:
        self.targets = targets
        self.flows: set[FlowKey] = set()
        self.route_flows = 0
        #: perf_counter() of the last TableMod applied.
        self.changed_at = 0.0
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        self.session = BlockingSession(address, "controller", "bench", keys=keys)
        self.session.settimeout(None)
        self.session.send(DatapathJoin(DPID, PORTS))
        self._thread = threading.Thread(target=self._run, name="bench-controller", daemon=True)
        self._thread.start()

    def _is_route(self, key: FlowKey) -> bool:
        return any(field == "ipv4_dst" and value in self.targets for field, value in key.match)

    def _run(self) -> None:
        try:
            while True:
                msg = self.session.receive()
                if isinstance(msg, TableMod):
                    with self.cond:
                        for flow in msg.add:
                            key = flow.key
                            if key not in self.flows:
                                self.flows.add(key)
                                self.route_flows += self._is_route(key)
                        for key in msg.delete:
                            if key in self.flows:
                                self.flows.discard(key)
                                self.route_flows -= self._is_route(key)
                        self.changed_at = time.perf_counter()
                        self.cond.notify_all()
                elif isinstance(msg, DumpTable):
                    self.session.send(TableDump(msg.request_id, msg.dpid, (), ()))
                elif isinstance(msg, StatsRequest):
                    self.session.send(ControllerStats(msg.request_id, {}, {}))
                elif isinstance(msg, Goodbye):
                    raise ConnectionError(f"the server said goodbye: {msg.reason}")
        except Exception as exc:  # noqa: BLE001 - closed (ours or the server's) or broken
            with self.cond:
                self.error = exc
                self.cond.notify_all()

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        """Wait until ``check()`` (called under the lock); when the last TableMod came."""
        with self.cond:
            if not self.cond.wait_for(lambda: check() or self.error is not None, timeout):
                raise TimeoutError(f"{what}: not within {timeout:.0f} s ({self.route_flows} route flows)")
            if not check():
                raise RuntimeError(f"{what}: controller session ended: {self.error}")
            return self.changed_at

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.session.sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
        self._thread.join(10)
        self.session.close()


def status(session: BlockingSession, request_id: int) -> dict[str, Any]:
    session.send(StatusRequest(request_id, detail=False))
    while True:
        msg = session.receive()
        if isinstance(msg, StatusReply) and msg.request_id == request_id:
            return msg.status


def synced_peers(address: Address, keys: Path, control: BlockingSession, ids: Iterator[int],
                 targets: frozenset[str]) -> tuple[FakeController, BlockingSession]:
    """A :class:`FakeController` joined to datapath 1 and a client session of ``rA`` whose
    FIB (two interfaces, their neighbours, no routes) the server has: the start line of a
    measurement, once the controller holds every flow the server believes it holds (the
    base table, sent after the dump). ``control``: an operator session to watch from."""
    controller = FakeController(address, keys, targets)
    try:
        client = BlockingSession(address, "client", VM, keys=keys)
    except BaseException:
        controller.close()
        raise
    try:
        client.send(FibSnapshot(Fib(INTERFACES, (), NEIGHBOURS)))
        deadline = time.monotonic() + 60
        while True:
            doc = status(control, next(ids))
            vm = doc["vms"][0]
            dp = next(d for d in doc["datapaths"] if d["dpid"] == f"{DPID:#x}")
            with controller.cond:
                held = len(controller.flows)
            if (doc["controller_connected"] and vm["synced"] and vm["client_connected"] and vm["route_count"] == 0
                    and dp["connected"] and dp["flow_count"] > 0 and dp["flow_count"] == held):
                return controller, client
            if controller.error is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no start line over {address}: controller {controller.error}, status {vm} {dp}")
            time.sleep(0.02)
    except BaseException:
        client.close()
        controller.close()
        raise
