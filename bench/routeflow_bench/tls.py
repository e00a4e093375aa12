"""What TLS costs the RF-protocol: the same work over a ``tls:`` listener (mutual TLS 1.3)
and over a ``tcp:`` one (HMAC key challenge, no encryption), on one RF-Server.

One real RF-Server process (``routeflow server``, ``manage_vms: false``, one VM ``rA`` on
datapath 1, engine none) listens on both ``tcp:127.0.0.1:P1`` and ``tls:127.0.0.1:P2``; it
makes every identity's key and certificate in a temporary key directory when it starts.
Every repeat measures each figure over both transports back to back, which of them goes
first alternating from one repeat to the next, so that machine noise hits both alike (one
warm-up round of both is not counted). Per repeat and transport:

* **session open**: an operator's :class:`~routeflow.protocol.transport.BlockingSession`
  opened and closed, as ``routeflow status`` does: credential read from the key directory,
  connect, hello, then the key challenge (tcp) or the TLS handshake (tls), welcome. The
  credential load alone is timed too (it is part of it).
* **request RTT**: ``StatusRequest(detail=False)`` to ``StatusReply`` on an open operator
  session, one at a time, with no controller connected (so the server answers at once,
  without asking a controller for its counters): per repeat the median and the p90.
* **route to flow throughput**: a fake controller (role ``controller``, in a thread of this
  process) joins datapath 1 and answers the server's ``DumpTable`` (an empty table) and any
  ``StatsRequest``; a fake RF-Client of ``rA`` sends a ``FibSnapshot`` (two interfaces,
  their neighbours, no routes). Once the server's table and the controller's agree, the
  client sends N routes as ``FibDelta`` messages of 2000, as the real client batches
  them, one third of them ECMP; timed from the first delta sent to the moment the
  controller has received ``TableMod`` adds of all N route flows. Then the routes are
  withdrawn (deltas of 2000 deletions), timed to the last flow delete, which also leaves
  the next repeat starting from the same state; both peers then disconnect.
* **CPU**: the CPU time the server process (all its threads, ``/proc/PID/task/*/schedstat``)
  and the two peers (this process) spend on the timed adds of the largest N, per route,
  and the server's per request: wall-clock figures on a loaded machine spread widely,
  CPU time much less.

Everything the RF-protocol carries both ways is paid by peers in this process and the
server alike: encoding, TLS records, decoding. The two peers run as threads of one Python
process here, the real ones in two processes; that costs both transports the same.

Not measured here: the slow-path RTT of the paper's Table 1 (``table1``). In routeflow
the slow path (ARP, ICMP to the router, routing protocol packets between switch ports and
VMs) goes either through the RFVS data plane (trunks) or through the controller's
packet-in / packet-out relay, which turns a packet-in from one datapath into a packet-out
to another inside the controller (``routeflow.controller.app``, ``_packet_in``) and never
crosses the RF-protocol: TLS on the RF-protocol cannot change it. Only a port-identification
(mapping) packet becomes an RF-protocol message (``MappingSeen``), once per VM interface.
"""

from __future__ import annotations

import contextlib
import itertools
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
    FibDelta,
    FibSnapshot,
    Goodbye,
    StatsRequest,
    StatusReply,
    StatusRequest,
    TableDump,
    TableMod,
)
from routeflow.protocol.transport import Address, BlockingSession, load_credential, parse_address
from routeflow_bench.common import Context
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary, median, percentile

#: No switch, namespace or shared socket: this benchmark needs no stack lock.
NEEDS_LOCK = False

#: Routes per FibDelta, as the RF-Client batches them (its watcher's ``max_batch``).
BATCH = 2000
#: The largest N measured (larger --sizes are capped to it).
MAX_ROUTES = 100_000
TRANSPORTS = ("tcp", "tls")
BASELINE = "same over tcp: (HMAC key, no encryption)"
NOTE = ("target (issue): TLS costs <= 1.1x, i.e. throughput ratio >= 0.91 and RTT ratio <= 1.1; "
        "one RF-Server listening on both tcp: and tls:, fake controller and client peers, transports "
        "interleaved each repeat; figures are medians over repeats (per-repeat median or p90 for RTT)")
NOTE_OPEN = ("session open: BlockingSession as the CLI opens one (credential read + connect + hello + key "
             "challenge or TLS 1.3 handshake with both certificates + welcome); not part of the 1.1x target, "
             "paid once per connection")

NOTE_CPU = ("CPU time (not wall time, so less sensitive to other load): the server process from "
            "/proc/PID/task/*/schedstat, the peers (threads of the benchmark process) from process_time(), "
            "over the timed adds or requests")

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
def rf_server(ctx: Context) -> Iterator[tuple[dict[str, Address], Path, int]]:
    """A real RF-Server process on a tcp: and a tls: loopback listener; its addresses by
    transport, its key directory and its pid. Killed, and its key directory removed, on exit."""
    work = Path(tempfile.mkdtemp(prefix="routeflow-bench-tls-"))
    addresses = {"tcp": parse_address(f"tcp:127.0.0.1:{free_port()}"),
                 "tls": parse_address(f"tls:127.0.0.1:{free_port()}")}
    keys = work / "keys"
    config = {
        "manage_vms": False,
        "listen": [str(addresses["tcp"]), str(addresses["tls"])],
        "vms": [{"name": VM, "dpid": DPID, "engine": "none", "interfaces": [
            {"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]},
            {"name": "eth2", "port": 2, "addresses": ["172.31.2.1/24"]}]}],
    }
    (work / "routeflow.yaml").write_text(yaml.safe_dump(config))
    log_path = ctx.run_dir / "tls-server.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "routeflow", "server", str(work / "routeflow.yaml"),
                                     "--keys", str(keys)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        for transport in TRANSPORTS:
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
        self._thread = threading.Thread(target=self._run, name="bench-tls-controller", daemon=True)
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


# --- one repeat over one transport -----------------------------------------------------


def measure_open_rtt(address: Address, keys: Path, server_pid: int, opens: int, requests: int,
                     ids: Iterator[int]) -> dict[str, float]:
    """Medians of ``opens`` session opens and credential loads; median and p90 of
    ``requests`` round trips, and the server's CPU per request (all in ms)."""
    loads, open_times, rtts = [], [], []
    for _ in range(opens):
        t = time.perf_counter()
        load_credential(address, keys, "operator", "bench")
        loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        session = BlockingSession(address, "operator", "bench", keys=keys)
        open_times.append(time.perf_counter() - t)
        session.close()
    session = BlockingSession(address, "operator", "bench", keys=keys)
    try:
        status(session, next(ids))  # warm: the first reply of a session is not timed
        cpu = cpu_seconds(server_pid)
        for _ in range(requests):
            rid = next(ids)
            t = time.perf_counter()
            session.send(StatusRequest(rid, detail=False))
            while True:
                msg = session.receive()
                if isinstance(msg, StatusReply) and msg.request_id == rid:
                    break
            rtts.append(time.perf_counter() - t)
        cpu = cpu_seconds(server_pid) - cpu
    finally:
        session.close()
    return {"open_ms": median(open_times) * 1000, "credential_ms": median(loads) * 1000,
            "rtt_median_ms": median(rtts) * 1000, "rtt_p90_ms": percentile(rtts, 90) * 1000,
            "rtt_server_cpu_ms": cpu / requests * 1000}


def measure_throughput(address: Address, keys: Path, server_pid: int, control: BlockingSession,
                       ids: Iterator[int], batch: list[Route], targets: frozenset[str]) -> dict[str, float]:
    """Routes/s added and withdrawn over ``address``, and the CPU the adds cost the server
    and the two peers (this process), in microseconds per route."""
    n = len(batch)
    timeout = 120 + n / 500
    controller = FakeController(address, keys, targets)
    client: BlockingSession | None = None
    try:
        client = BlockingSession(address, "client", VM, keys=keys)
        client.send(FibSnapshot(Fib(INTERFACES, (), NEIGHBOURS)))
        # The start line: the VM synced with no routes, and the controller holding every flow
        # the server believes it holds (the base table, sent after the dump).
        deadline = time.monotonic() + 60
        while True:
            doc = status(control, next(ids))
            vm = doc["vms"][0]
            dp = next(d for d in doc["datapaths"] if d["dpid"] == f"{DPID:#x}")
            with controller.cond:
                held = len(controller.flows)
            if (doc["controller_connected"] and vm["synced"] and vm["client_connected"] and vm["route_count"] == 0
                    and dp["connected"] and dp["flow_count"] > 0 and dp["flow_count"] == held):
                break
            if controller.error is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no start line over {address}: controller {controller.error}, status {vm} {dp}")
            time.sleep(0.02)
        server_cpu, peer_cpu = cpu_seconds(server_pid), time.process_time()
        t = time.perf_counter()
        for i in range(0, n, BATCH):
            client.send(FibDelta(routes_set=tuple(batch[i : i + BATCH])))
        done = controller.wait(lambda: controller.route_flows >= n, timeout, f"{n} route flows over {address}")
        server_cpu, peer_cpu = cpu_seconds(server_pid) - server_cpu, time.process_time() - peer_cpu
        added = n / (done - t)
        t = time.perf_counter()
        for i in range(0, n, BATCH):
            client.send(FibDelta(routes_del=tuple(r.prefix for r in batch[i : i + BATCH])))
        done = controller.wait(lambda: controller.route_flows == 0, timeout, f"{n} flow deletes over {address}")
        return {"add": added, "withdraw": n / (done - t), "server_cpu_us": server_cpu / n * 1e6,
                "peer_cpu_us": peer_cpu / n * 1e6}
    finally:
        if client is not None:
            client.close()
        controller.close()


# --- the benchmark -----------------------------------------------------------------------


def run(ctx: Context) -> list[Row]:
    sizes = sorted({min(n, MAX_ROUTES) for n in ctx.sizes})
    opens = 10 if ctx.quick else 20
    requests = 50 if ctx.quick else 200
    all_routes = routes(max(sizes))
    targets = frozenset(r.prefix for r in all_routes)
    ids = itertools.count(1)
    samples: dict[str, dict[str, list[float]]] = {t: {} for t in TRANSPORTS}

    def record(transport: str, values: dict[str, float], suffix: str = "") -> None:
        for key, value in values.items():
            samples[transport].setdefault(key + suffix, []).append(value)

    ctx.say(f"tls: one RF-Server on tcp: and tls:; {ctx.repeat} repeats x (sizes {sizes}, {opens} opens, "
            f"{requests} requests) per transport")
    with rf_server(ctx) as (addresses, keys, pid):
        control = BlockingSession(addresses["tcp"], "operator", "bench-control", keys=keys)
        try:
            # Warm-up, not counted: the server's first routes, both transports' first handshakes.
            for transport in TRANSPORTS:
                measure_open_rtt(addresses[transport], keys, pid, 2, 10, ids)
                measure_throughput(addresses[transport], keys, pid, control, ids, all_routes[: sizes[0]], targets)
            for i in range(ctx.repeat):
                # Each figure's two transports back to back, the first of them alternating.
                order = TRANSPORTS if i % 2 == 0 else TRANSPORTS[::-1]
                for transport in order:
                    record(transport, measure_open_rtt(addresses[transport], keys, pid, opens, requests, ids))
                for n in sizes:
                    for transport in order:
                        record(transport, measure_throughput(addresses[transport], keys, pid, control, ids,
                                                             all_routes[:n], targets), f"_{n}")
                ctx.say(f"tls: repeat {i + 1}/{ctx.repeat}: " + "; ".join(
                    f"{t} {samples[t][f'add_{sizes[-1]}'][-1]:,.0f} routes/s, "
                    f"RTT {samples[t]['rtt_median_ms'][-1]:.3f} ms, open {samples[t]['open_ms'][-1]:.2f} ms"
                    for t in TRANSPORTS))
        finally:
            control.close()
    ctx.raw["tls"] = {"samples": samples, "sizes": sizes, "batch": BATCH, "opens": opens, "requests": requests}

    def row(key: str, metric: str, unit: str, note: str = NOTE) -> Row:
        return Row("tls", metric, unit, Summary.of(samples["tls"][key]), Summary.of(samples["tcp"][key]),
                   BASELINE, note=note)

    rows = []
    for n in sizes:
        rows.append(row(f"add_{n}", f"route→flow throughput, {n:,} routes", "routes/s"))
        rows.append(row(f"withdraw_{n}", f"withdraw→flow delete throughput, {n:,} routes", "routes/s"))
    top = sizes[-1]
    rows.append(row(f"server_cpu_us_{top}", f"server CPU per route added ({top:,})", "µs", NOTE_CPU))
    rows.append(row(f"peer_cpu_us_{top}", f"client+controller CPU per route added ({top:,})", "µs", NOTE_CPU))
    rows.append(row("rtt_median_ms", "request RTT median (StatusRequest→StatusReply)", "ms"))
    rows.append(row("rtt_p90_ms", "request RTT p90 (StatusRequest→StatusReply)", "ms"))
    rows.append(row("rtt_server_cpu_ms", "server CPU per request", "ms", NOTE_CPU))
    rows.append(row("open_ms", "session open (operator)", "ms", NOTE_OPEN))
    rows.append(row("credential_ms", "of which credential load", "ms", NOTE_OPEN))
    return rows
