"""What the REST API's biggest answer costs the server: ``GET /api/v1/vms/rA/routes`` of a
full table, streamed, while the server keeps serving its peers.

One real RF-Server process (``routeflow server``, no VMs to manage, its HTTP surface on a
loopback port) is fed N routes by a fake RF-Client of ``rA`` until a fake controller holds
every route flow (:mod:`routeflow_bench.rfpeers`). Then, per repeat:

* **idle**: an operator's RF-protocol round trips (``StatusRequest(detail=False)`` to its
  reply), one every 5 ms for a second: the server's responsiveness with nothing else to do;
* **during**: the same round trips while another thread reads the whole route list over
  HTTP (N routes, one streamed JSON document), from the request to its last byte.

Figures: the GET's time and routes/s; the round trip's median and maximum during the GET
as a ratio to idle (target of the issue: the server's latency while the request runs at
most 1.2x idle; the maximum bounds how long the request holds the server's event loop at
a time, 50 ms the target). The RF-protocol round trip stands for "the server's slow-path
latency": routeflow's slow path itself never crosses the server (it goes by the RFVS
trunk or the controller's relay), so what a long request could slow is the server's
answer to its peers, which this measures.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from typing import Any

from routeflow.protocol.messages import FibDelta
from routeflow.protocol.transport import BlockingSession
from routeflow_bench.common import Context
from routeflow_bench.report import Row
from routeflow_bench.rfpeers import free_port, rf_server, routes, status, synced_peers
from routeflow_bench.stats import Summary, median

#: No switch, namespace or shared socket: this benchmark needs no stack lock.
NEEDS_LOCK = False
BATCH = 2000
#: Round trips are spaced so: one at a time, as an operator's or a peer's would be.
SPACING = 0.005
IDLE_SECONDS = 1.0
NOTE = ("one RF-Server process, N routes from a fake client, fake controller; RTT = an operator's "
        "StatusRequest(detail=False) round trip over tcp: every 5 ms; during = while one HTTP GET streams "
        "the N routes; target (issue): during/idle <= 1.2x, max during <= 50 ms")


def _round_trips(session: BlockingSession, ids: itertools.count[int], until: threading.Event | None,
                 seconds: float) -> list[float]:
    """Round-trip times, one every SPACING, for ``seconds`` or until ``until`` is set."""
    times = []
    end = time.monotonic() + seconds
    while (until is None and time.monotonic() < end) or (until is not None and not until.is_set()):
        t = time.perf_counter()
        status(session, next(ids))
        times.append(time.perf_counter() - t)
        time.sleep(SPACING)
    return times


#: The reader: another process, as an operator's would be (a thread of this one would share
#: its interpreter lock with the round trips measured).
READER = """
import sys, time, urllib.request
t = time.perf_counter()
size = 0
with urllib.request.urlopen(sys.argv[1], timeout=600) as response:
    while chunk := response.read(1 << 16):
        size += len(chunk)
print(time.perf_counter() - t, size)
"""


def _get(url: str, result: dict[str, Any], done: threading.Event) -> None:
    try:
        proc = subprocess.run([sys.executable, "-c", READER, url], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip()[-500:])
        seconds, size = proc.stdout.split()
        result.update(seconds=float(seconds), bytes=int(size))
    except Exception as exc:  # noqa: BLE001 - reported as the row's failure
        result["error"] = exc
    finally:
        done.set()


def run(ctx: Context) -> list[Row]:
    n = 20_000 if ctx.quick else 1_000_000
    table = routes(n)
    http = f"127.0.0.1:{free_port()}"
    ids = itertools.count(1)
    samples: dict[str, list[float]] = {k: [] for k in ("get_s", "rate", "idle_median", "idle_max",
                                                       "during_median", "during_max")}
    ctx.say(f"api: one RF-Server, {n:,} routes, {ctx.repeat} repeats of GET /api/v1/vms/rA/routes")
    with rf_server(ctx, ("tcp",), http=http) as (addresses, keys, _pid):
        control = BlockingSession(addresses["tcp"], "operator", "bench-api", keys=keys)
        controller, client = synced_peers(addresses["tcp"], keys, control, ids, frozenset(r.prefix for r in table))
        try:
            for i in range(0, n, BATCH):
                client.send(FibDelta(routes_set=tuple(table[i:i + BATCH])))
            controller.wait(lambda: controller.route_flows >= n, 120 + n / 500, f"{n} route flows")
            # The server drops an operator silent for its idle timeout: the load took longer.
            control.close()
            control = BlockingSession(addresses["tcp"], "operator", "bench-api", keys=keys)
            assert status(control, next(ids))["vms"][0]["route_count"] == n
            for r in range(ctx.repeat):
                idle = _round_trips(control, ids, None, IDLE_SECONDS)
                result: dict[str, Any] = {}
                done = threading.Event()
                reader = threading.Thread(target=_get, args=(f"http://{http}/api/v1/vms/rA/routes", result, done))
                reader.start()
                during = _round_trips(control, ids, done, 0)
                reader.join()
                if "error" in result:
                    raise RuntimeError(f"GET of {n} routes failed: {result['error']}")
                samples["get_s"].append(result["seconds"])
                samples["rate"].append(n / result["seconds"])
                samples["idle_median"].append(median(idle) * 1000)
                samples["idle_max"].append(max(idle) * 1000)
                samples["during_median"].append(median(during) * 1000)
                samples["during_max"].append(max(during) * 1000)
                ctx.say(f"api: repeat {r + 1}/{ctx.repeat}: GET {result['seconds']:.2f} s "
                        f"({result['bytes'] / 1e6:.0f} MB), RTT median {median(during) * 1000:.2f} ms during vs "
                        f"{median(idle) * 1000:.2f} ms idle, max {max(during) * 1000:.1f} ms ({len(during)} trips)")
        finally:
            client.close()
            controller.close()
            control.close()
    ctx.raw["api"] = {"routes": n, "samples": samples}
    idle_label = "same round trip, server idle"
    return [
        Row("api", f"GET {n:,} routes, streamed", "s", Summary.of(samples["get_s"]), note=NOTE),
        Row("api", f"GET {n:,} routes, streamed", "routes/s", Summary.of(samples["rate"])),
        Row("api", "server RTT median while the GET runs", "ms", Summary.of(samples["during_median"]),
            Summary.of(samples["idle_median"]), idle_label),
        Row("api", "server RTT max while the GET runs", "ms", Summary.of(samples["during_max"]),
            Summary.of(samples["idle_max"]), idle_label),
    ]
