"""The paper's Table 1 on rftest2: ICMP RTT, average and 90th percentile, slow path
(h1 pings its gateway 172.31.1.1, answered by the VM rA) and fast path (h1 pings h4
three routers away, forwarded by flows alone).

The slow path is measured twice: as rftest2 ships, across each switch's trunk to the
RFVS (data plane), and with the trunks taken out of the example, relayed by the
controller (packet-in, packet-out), as the original RouteFlow does.

Baseline, in the same run and interleaved with the routeflow pings: two namespaces pinging
across one plain OVS userspace bridge holding a single ``actions=NORMAL`` flow.
Each repeat is one ping run of ``count`` packets; a figure is the median over the repeats
of that run's average (or p90), with the min–max over the repeats.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from routeflow.harness import Stack, example_variant, ping, wait_for
from routeflow_bench.common import BaselineHost, Context, PlainBridge
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary, mean, percentile

PUBLISHED = {
    ("slow", "avg"): "RouteFlow 116 ms; Cisco 3560-e 5.46 ms",
    ("relay", "avg"): "RouteFlow 116 ms; Cisco 3560-e 5.46 ms",
    ("fast", "avg"): "RouteFlow 0.082 ms; Cisco 3560-e 0.100 ms",
}


def _ping_stats(namespace: str, destination: str, count: int, interval: float) -> tuple[float, float, int]:
    """(avg, p90, lost) of one ping run."""
    result = ping(namespace, destination, count=count, interval=interval, timeout=1.0)
    return mean(result.rtts_ms), percentile(result.rtts_ms, 90), result.sent - result.received


def run(ctx: Context) -> list[Row]:
    repeat = ctx.repeat
    count = 20 if ctx.quick else 50
    interval = 0.02
    run_dir = Path(tempfile.mkdtemp(prefix="bench-table1-", dir=ctx.run_dir))
    hosts = [BaselineHost("bnb-t1a", "192.168.251.1/24", 1), BaselineHost("bnb-t1b", "192.168.251.2/24", 2)]
    samples: dict[str, list[float]] = {f"{k}_{stat}": [] for k in ("slow", "relay", "fast", "base")
                                       for stat in ("avg", "p90")}
    lost = {"slow": 0, "relay": 0, "fast": 0, "base": 0}
    phases = (("rftest2", (("slow", "h1", "172.31.1.1"), ("fast", "h1", "172.31.4.100"))),
              (example_variant("rftest2", run_dir / "rftest2-relay", drop=("trunk",)), (("relay", "h1", "172.31.1.1"),)))
    with PlainBridge("bnb-t1", hosts) as bridge:
        bridge.add_flows_text("priority=0,actions=NORMAL\n")
        for example, targets in phases:
            ctx.say(f"table1: bringing up {example}; {repeat} x {count} pings each")
            with Stack(example, run_dir / f"run-{targets[0][0]}") as stack:
                t = time.monotonic()
                wait_for(lambda: stack.all_pairs_ok() and stack.verify().ok, 120, 0.2)
                ctx.say(f"table1: converged in {time.monotonic() - t:.1f} s")
                # Warm ARP caches everywhere, so no run pays for a resolution.
                for _, ns, dst in targets:
                    ping(ns, dst, count=2, interval=0.05)
                ping(hosts[0].name, "192.168.251.2", count=2, interval=0.05)
                for i in range(repeat):
                    for key, ns, dst in (("base", hosts[0].name, "192.168.251.2"), *targets):
                        avg, p90, n_lost = _ping_stats(ns, dst, count, interval)
                        samples[f"{key}_avg"].append(avg)
                        samples[f"{key}_p90"].append(p90)
                        lost[key] += n_lost
                    ctx.say(f"table1: repeat {i + 1}/{repeat}: " + ", ".join(
                        f"{key} {samples[f'{key}_avg'][-1]:.3f} ms" for key, _, _ in (*targets, ("base", "", ""))))
    ctx.raw["table1"] = {"samples_ms": samples, "lost": lost, "count": count, "interval_s": interval}
    base = "plain OVS, NORMAL"
    note_lost = ", ".join(f"{key} {n}" for key, n in lost.items())
    rows = []
    for path, label in (("slow", "slow path h1->gateway (VM), trunk"),
                        ("relay", "slow path h1->gateway (VM), controller relay"),
                        ("fast", "fast path h1->h4 (flows)")):
        for stat in ("avg", "p90"):
            rows.append(Row("table1", f"{label} RTT {stat}", "ms", Summary.of(samples[f"{path}_{stat}"]),
                            Summary.of(samples[f"base_{stat}"]), base, PUBLISHED.get((path, stat), ""),
                            note=(f"{repeat} runs x {count} pings at {interval * 1000:.0f} ms; median of the "
                                  f"per-run {stat}; lost pings: {note_lost}") if (path, stat) == ("slow", "avg")
                            else ""))
    return rows

