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

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

from routeflow.model import Route
from routeflow.protocol.messages import (
    FibDelta,
)
from routeflow.protocol.transport import Address, BlockingSession, load_credential
from routeflow_bench.common import Context
from routeflow_bench.report import Row
from routeflow_bench.rfpeers import (
    cpu_seconds,
    rf_server,
    routes,
    status,
    synced_peers,
)
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
            t = time.perf_counter()
            status(session, next(ids))
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
    controller, client = synced_peers(address, keys, control, ids, targets)
    try:
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
    with rf_server(ctx, TRANSPORTS) as (addresses, keys, pid):
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
