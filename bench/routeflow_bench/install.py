"""Route-install throughput and latency on rftest1 (one switch s1, VM rfvmA, no routing engine).

For each size N: ``ip -batch`` adds N routes ``10.X.Y.0/24 via 172.31.1.2`` (host b1, a
neighbour made permanent beforehand) to rfvmA's FIB at once; the clock runs from just
before the batch to the moment s1 itself reports all N new flows in table 1 (polled with
``ovs-ofctl dump-aggregate``, not through routeflow). Then the same N are deleted, timed
to the flow count being back where it was.

Per-route latency comes from the flow-count growth curve: route k is taken as submitted
at its even share of the batch's runtime and installed at the first poll that counts more
than k new flows (FIFO). It includes the queueing behind earlier routes of the batch.

Baseline: the same N flows pushed from a file with ``ovs-ofctl --bundle add-flows`` (and
removed with ``delete_strict`` lines) into a fresh userspace bridge, time to all present/gone:
the switch's own ceiling. Without ``--bundle`` ovs-ofctl sends one flow-mod at a time and
manages only ~7,500 flows/s at 100k, slower than routeflow, so it would not be a ceiling.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from routeflow.harness import Stack, wait_for
from routeflow_bench.common import Context, PlainBridge, flow_count, peak_rss_kb, sh, timed_verify
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary, curve_latencies, percentile

VM, SWITCH, GATEWAY, PORT = "rfvmA", "s1", "172.31.1.2", 1
ROUTER_MAC = "02:52:46:01:00:01"
PUBLISHED_RATE = "RouteFlow ~1,000 flow-mods/s; SONiC 15,900 routes/s"


def prefix(i: int) -> str:
    """The i-th benchmark prefix: 10.0.0.0/24, 10.0.1.0/24, ... then 11.0.0.0/24 after 65,536."""
    return f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"


def route_batch(n: int, verb: str) -> str:
    return "".join(f"route {verb} {prefix(i)} via {GATEWAY}\n" for i in range(n))


def flow_file(n: int, gw_mac: str, delete: bool = False) -> str:
    """The flows routeflow would install for the batch, as ovs-ofctl add-flows lines."""
    if delete:
        return "".join(f"delete_strict table=1,priority=1024,ip,nw_dst={prefix(i)}\n" for i in range(n))
    actions = f"dec_ttl,set_field:{ROUTER_MAC}->eth_src,set_field:{gw_mac}->eth_dst,output:{PORT}"
    return "".join(f"table=1,priority=1024,ip,nw_dst={prefix(i)},actions={actions}\n" for i in range(n))


class Poller:
    """Polls a flow count in a thread: (monotonic time, count) samples until stopped."""

    def __init__(self, count: Callable[[], int], interval: float = 0.02) -> None:
        self.count, self.interval = count, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                c = self.count()
            except Exception:  # a transient ovs-ofctl failure: try again
                c = -1
            if c >= 0:
                self.samples.append((time.monotonic(), c))
            self._stop.wait(self.interval)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait(self, done: Callable[[int], bool], timeout: float) -> float:
        """Monotonic time of the first sample for which ``done(count)``; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            samples = self.samples
            for t, c in samples[seen:]:
                if done(c):
                    return t
            seen = len(samples)
            time.sleep(self.interval / 2)
        last = self.samples[-1][1] if self.samples else None
        raise TimeoutError(f"not done within {timeout:.0f} s (last count {last})")


def timed_batch(batch: Path, target: Callable[[int], bool], progress: Callable[[int], int],
                n: int, timeout: float, count: Callable[[], int]) -> dict[str, Any]:
    """Run ``ip -batch`` in the VM; time to ``target(flow count)``, with the growth curve."""
    with Poller(count) as poller:
        t0 = time.monotonic()
        proc = subprocess.run(["ip", "-n", VM, "-batch", str(batch)], capture_output=True, text=True, timeout=timeout)
        t_kernel = time.monotonic()
        if proc.returncode != 0:
            raise RuntimeError(f"ip -batch failed: {proc.stderr.strip()[:300]}")
        t_done = poller.wait(target, timeout)
    curve = [(t, progress(c)) for t, c in poller.samples if t >= t0]
    latencies = curve_latencies(curve, n, t0, t_kernel)
    return {"seconds": t_done - t0, "kernel_seconds": t_kernel - t0, "rate": n / (t_done - t0),
            "lat_p50_ms": percentile(latencies, 50) * 1000, "lat_p99_ms": percentile(latencies, 99) * 1000,
            "polls": len(curve)}


def counters(base: int, n: int, adding: bool) -> tuple[Callable[[int], bool], Callable[[int], int]]:
    """(done?, routes done so far) as functions of the switch's table-1 flow count."""
    if adding:
        return (lambda c: c >= base + n), (lambda c: c - base)
    return (lambda c: c <= base), (lambda c: base + n - c)


def _resolve_neighbour(timeout: float = 30.0) -> str:
    """Make b1 (the routes' next hop) a resolved, permanent neighbour of rfvmA; its MAC.

    Retried: right after start-up the slow path (port mapping) may not be ready yet.
    """
    def resolved() -> str | None:
        sh(["ip", "netns", "exec", VM, "ping", "-c", "1", "-W", "1", GATEWAY], check=False)
        parts = sh(["ip", "-n", VM, "neigh", "show", GATEWAY, "dev", "eth1"]).split()
        return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None

    mac = str(wait_for(resolved, timeout, 0.5))
    sh(["ip", "-n", VM, "neigh", "replace", GATEWAY, "lladdr", mac, "dev", "eth1", "nud", "permanent"])
    return mac


def _py_spy() -> Path:
    """py-spy next to the running interpreter (the project venv)."""
    return Path(sys.executable).parent / "py-spy"


def _profile(ctx: Context, pids: dict[str, list[int]], label: str) -> dict[str, subprocess.Popen[bytes]]:
    spy = _py_spy()
    procs = {}
    for name, ps in pids.items():
        for pid in ps[:1]:
            out = ctx.run_dir / f"pyspy-{label}-{name}.txt"
            procs[name] = subprocess.Popen([str(spy), "record", "--nonblocking", "--format", "raw", "-r", "200",
                                            "-o", str(out), "-p", str(pid)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return procs


def _stop_profile(ctx: Context, procs: dict[str, subprocess.Popen[bytes]], label: str) -> dict[str, Any]:
    for proc in procs.values():
        proc.send_signal(signal.SIGINT)
    result = {}
    for name, proc in procs.items():
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        path = ctx.run_dir / f"pyspy-{label}-{name}.txt"
        result[name] = {"file": str(path), **top_functions(path)}
    return result


def top_functions(path: Path, top: int = 12) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy's collapsed (raw) output."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    if not path.exists():
        return {"samples": 0, "self": [], "inclusive": []}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [f for f in stack.split(";") if f]
        total += count
        if frames:
            self_counts[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    interesting = [(f, c) for f, c in incl.most_common() if not any(b in f for b in BOILERPLATE)]
    return {"samples": total,
            "self": [(f, round(100 * c / total, 1)) for f, c in self_counts.most_common(top)],
            "inclusive": [(f, round(100 * c / total, 1)) for f, c in interesting[:top]]}


#: Frames every sample has (event loop, thread and module entry points): left out of "inclusive".
BOILERPLATE = ("asyncio/", "<frozen runpy>", "threading.py", "routeflow/__main__.py", "routeflow/cli/",
               "os_ken/lib/hub.py", "eventlet/", "greenlet")


def profile_summary(raw: dict[str, Any], top: int = 6) -> str:
    """Text: the top functions per routeflow process from the py-spy runs, if any."""
    lines = []
    for n, size in raw.get("sizes", {}).items():
        for phase, procs in (size.get("profile") or {}).items():
            for name, prof in procs.items():
                lines.append(f"py-spy, {phase} of N={int(n):,}, {name} ({prof['samples']} samples at 200 Hz "
                             f"= {prof['samples'] / 200:.1f} CPU-s; raw stacks {prof['file']}):")
                lines += [f"    self {pct:5.1f}%  {f}" for f, pct in prof["self"][:top]]
                lines += [f"    incl {pct:5.1f}%  {f}" for f, pct in prof["inclusive"][:top]]
    return "\n".join(lines)


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    run_dir = Path(tempfile.mkdtemp(prefix="bench-install-", dir=ctx.run_dir))
    raw: dict[str, Any] = {"sizes": {}}
    ctx.raw["install"] = raw
    rows: list[Row] = []
    ctx.say(f"install: bringing up rftest1; sizes {sizes}, {ctx.repeat} repeats")
    with PlainBridge("bnb-ofs") as bridge, Stack("rftest1", run_dir) as stack:
        wait_for(lambda: stack.verify().ok and stack.status()["datapaths"], 60, 0.2)
        gw_mac = _resolve_neighbour()
        stack.wait_verify_clean(30)
        base = flow_count(SWITCH, "table=1")
        assert stack.server and stack.controller
        pids = {"server": [stack.server.pid], "controller": [stack.controller.pid],
                "client": stack.client_pids(VM)}
        ctx.say(f"install: ready; {base} flows in {SWITCH} table 1; pids {pids}")
        for n in sizes:
            repeat = ctx.repeat if n < 100_000 else min(ctx.repeat, 3)
            timeout = max(120.0, n / 100)
            add, delete = Path(run_dir, f"add-{n}.batch"), Path(run_dir, f"del-{n}.batch")
            add.write_text(route_batch(n, "add"))
            delete.write_text(route_batch(n, "del"))
            adds, dels, b_adds, b_dels, errors = [], [], [], [], []
            verify_s: list[float] = []
            for r in range(repeat):
                # Baseline first: the bridge is idle while routeflow runs, and vice versa.
                b_adds.append(bundle_baseline(bridge, n, gw_mac, delete=False))
                b_dels.append(bundle_baseline(bridge, n, gw_mac, delete=True))
                try:
                    adds.append(timed_batch(add, *counters(base, n, adding=True), n, timeout,
                                            lambda: flow_count(SWITCH, "table=1")))
                    ctx.say(f"install: N={n} run {r + 1}/{repeat}: add {adds[-1]['seconds']:.2f} s "
                            f"({adds[-1]['rate']:,.0f}/s; baseline {n / b_adds[-1]:,.0f}/s)")
                    if r == repeat - 1:
                        verify_s.append(timed_verify(stack, max(60.0, n / 500)))
                    dels.append(timed_batch(delete, *counters(base, n, adding=False), n, timeout,
                                            lambda: flow_count(SWITCH, "table=1")))
                    ctx.say(f"install: N={n} run {r + 1}/{repeat}: delete {dels[-1]['seconds']:.2f} s "
                            f"({dels[-1]['rate']:,.0f}/s; baseline {n / b_dels[-1]:,.0f}/s)")
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    ctx.say(f"install: N={n} run {r + 1} failed: {errors[-1]}; cleaning up the routes")
                    subprocess.run(["ip", "-n", VM, "-force", "-batch", str(delete)], capture_output=True)
                    wait_for(lambda: flow_count(SWITCH, "table=1") <= base, timeout, 0.5)
                    break
            profile = None
            if ctx.profile and n == max(sizes) and not errors and not _py_spy().exists():
                ctx.say("install: --profile needs py-spy: .venv/bin/pip install py-spy; not profiling")
            elif ctx.profile and n == max(sizes) and not errors:
                ctx.say(f"install: N={n}: one more add/delete under py-spy (not counted)")
                procs = _profile(ctx, pids, f"add-{n}")
                timed_batch(add, *counters(base, n, adding=True), n, timeout,
                            lambda: flow_count(SWITCH, "table=1"))
                profile = {"add": _stop_profile(ctx, procs, f"add-{n}")}
                procs = _profile(ctx, pids, f"del-{n}")
                timed_batch(delete, *counters(base, n, adding=False), n, timeout,
                            lambda: flow_count(SWITCH, "table=1"))
                profile["delete"] = _stop_profile(ctx, procs, f"del-{n}")
            rss = {name: max((peak_rss_kb(p) or 0 for p in ps), default=0) for name, ps in pids.items()}
            raw["sizes"][str(n)] = {"add": adds, "delete": dels, "baseline_add_s": b_adds, "baseline_delete_s": b_dels,
                                    "verify_s": verify_s, "peak_rss_kb": rss, "errors": errors, "profile": profile}
            rows += _rows(n, adds, dels, b_adds, b_dels, verify_s, rss, errors)
    return rows


def bundle_baseline(bridge: PlainBridge, n: int, gw_mac: str, delete: bool) -> float:
    text = flow_file(n, gw_mac, delete)
    target = 0 if delete else n
    t0 = time.monotonic()
    bridge.add_flows_text(text, bundle=True)
    wait_for(lambda: flow_count(bridge.name, "table=1") == target, max(120.0, n / 100), 0.02)
    return time.monotonic() - t0


def _rows(n: int, adds: list[dict[str, Any]], dels: list[dict[str, Any]], b_adds: list[float], b_dels: list[float],
          verify_s: list[float], rss: dict[str, int], errors: list[str]) -> list[Row]:
    label = "ovs-ofctl --bundle add-flows"
    bench = f"install N={n:,}"
    err = ("; FAILED: " + "; ".join(errors)) if errors else ""
    rows = [
        Row(bench, "add: time to all flows in s1", "s", Summary.of(a["seconds"] for a in adds),
            Summary.of(b_adds), label,
            note=(f"ip -batch itself took {Summary.of(a['kernel_seconds'] for a in adds).median:.2f} s (median); "
                  f"verify clean after the last add in {', '.join(f'{v:.1f}' for v in verify_s) or '-'} s; "
                  f"latency: growth-curve method (module docstring){err}")),
        Row(bench, "add: routes/s", "1/s", Summary.of(a["rate"] for a in adds),
            Summary.of(n / b for b in b_adds), label, PUBLISHED_RATE),
        Row(bench, "add: per-route latency p50", "ms", Summary.of(a["lat_p50_ms"] for a in adds)),
        Row(bench, "add: per-route latency p99", "ms", Summary.of(a["lat_p99_ms"] for a in adds)),
        Row(bench, "delete: time to all flows gone", "s", Summary.of(d["seconds"] for d in dels),
            Summary.of(b_dels), "ovs-ofctl --bundle delete_strict"),
        Row(bench, "delete: routes/s", "1/s", Summary.of(d["rate"] for d in dels),
            Summary.of(n / b for b in b_dels), "ovs-ofctl --bundle delete_strict"),
        Row(bench, "delete: per-route latency p50", "ms", Summary.of(d["lat_p50_ms"] for d in dels)),
        Row(bench, "delete: per-route latency p99", "ms", Summary.of(d["lat_p99_ms"] for d in dels)),
    ]
    rows += [Row(bench, f"peak RSS (VmHWM) {name}", "MB", Summary.of([kb / 1024]), extra={"kb": kb},
                 published="target < 1 GB")
             for name, kb in rss.items()]
    return rows
