"""N routes announced over eBGP by an external peer (bench/topologies/bgp), then withdrawn.

The peer E1 is a legacy FRR router (bgpd, AS 65001) on port 1 of switch s1; the VM
rfvmA (bgpd, AS 65000) mirrors s1 and peers with it across the switch (the session's
packets take routeflow's slow path). Before the clock starts, E1's kernel FIB is loaded
with N blackhole routes ``10.X.Y.0/24`` (the install benchmark's prefixes) in chunks
its zebra keeps up with. The clock starts with one command on E1, ``redistribute
kernel``: all N go out at once, built by FRR's C bgpd, so the first change has a clean
timestamp and no Python feeder paces the updates. ``no redistribute kernel`` withdraws
them. (Announcing by ``ip -batch`` into E1's FIB loses routes: 100k deletions overrun
zebra's netlink socket and E1 never withdraws the routes it missed.)

Two clocks run from that command, sampled while the routes travel: rfvmA's kernel FIB
(``/proc/PID/net/fib_triestat`` of a process in the VM: no fork, no route dump) and s1's
table 1 (``ovs-ofctl dump-aggregate``, the switch itself). The FIB curve is the baseline
in the same run, BGP alone (the routing engines' ceiling); the switch curve is
routeflow's result. Per-route latency: the peer's command to the flow (the growth-curve
method of the install benchmark) and routeflow's share, VM FIB to flow, pairing the
k-th route of both curves (FIFO). The switch's own ceiling, the same N flows by
``ovs-ofctl --bundle add-flows``, is measured in the same run as in the install benchmark.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from routeflow.harness import Stack, wait_for
from routeflow.lab.network import ROUTER_RUN_ROOT
from routeflow.vnet import VnetError
from routeflow.vnet.frr import DEFAULT_RUN_ROOT, vtysh
from routeflow_bench.common import TOPOLOGIES, Context, PlainBridge, flow_count, peak_rss_kb, sh, timed_verify
from routeflow_bench.install import PUBLISHED_RATE, Poller, bundle_baseline, counters, prefix
from routeflow_bench.parse import parse_fib_prefixes, parse_frr_route_counts
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary, curve_delays, curve_latencies, percentile

TOPOLOGY = TOPOLOGIES / "bgp"
VM, PEER, SWITCH, PEER_IP, PEER_AS = "rfvmA", "E1", "s1", "192.168.29.9", 65001


def route_lines(start: int, stop: int, verb: str) -> str:
    """``ip -batch`` lines adding or deleting blackhole routes for prefixes ``start`` .. ``stop - 1``."""
    return "".join(f"route {verb} blackhole {prefix(i)}\n" for i in range(start, stop))


class Feed:
    """An FRR lab router whose kernel FIB holds the benchmark prefixes, announced to its
    BGP neighbours or withdrawn with one command."""

    #: Routes per ``ip -batch``: zebra reads each chunk's notifications before the next.
    CHUNK = 10_000

    def __init__(self, router: str, asn: int) -> None:
        self.router, self.asn = router, asn
        self.loaded = 0

    def kernel_routes(self) -> int:
        text = vtysh(self.router, "show ip route summary json", ROUTER_RUN_ROOT)
        return parse_frr_route_counts(text).get("kernel", 0)

    def load(self, n: int) -> None:
        """Make prefixes 0 .. n-1 (exactly) the router's kernel routes, as zebra sees them."""
        while self.loaded != n:
            step = max(-self.CHUNK, min(self.CHUNK, n - self.loaded))
            lo, hi = sorted((self.loaded, self.loaded + step))
            sh(["ip", "-n", self.router, "-batch", "-"], input=route_lines(lo, hi, "add" if step > 0 else "del"),
               timeout=300)
            self.loaded += step
            wait_for(lambda: self.kernel_routes() == self.loaded, 120, 0.1)

    def announce(self, on: bool) -> None:
        vtysh(self.router, ["configure terminal", f"router bgp {self.asn}", "address-family ipv4 unicast",
                            ("" if on else "no ") + "redistribute kernel"], ROUTER_RUN_ROOT)


class NetnsFib:
    """The IPv4 FIB prefix count of a namespace, read through a process living in it."""

    def __init__(self, netns: str, comm: str = "zebra") -> None:
        pids = sh(["ip", "netns", "pids", netns]).split()
        found = [p for p in pids if Path(f"/proc/{p}/comm").read_text().strip() == comm]
        if not found:
            raise RuntimeError(f"no {comm} process in namespace {netns}")
        self.path = Path(f"/proc/{found[0]}/net/fib_triestat")

    def count(self) -> int:
        return parse_fib_prefixes(self.path.read_text())


def session_established(router: str, neighbour: str, run_root: Path = DEFAULT_RUN_ROOT) -> bool:
    """Whether ``router``'s BGP session with ``neighbour`` is up (False while bgpd starts)."""
    try:
        text = vtysh(router, f"show bgp neighbors {neighbour}", run_root)
    except VnetError:
        return False
    return "BGP state = Established" in text


def timed_feed(feed: Feed, n: int, adding: bool, bases: tuple[int, int], fib: NetnsFib,
               timeout: float) -> dict[str, Any]:
    """Announce (or withdraw) the peer's N routes; time to the VM's FIB and to the switch being done."""
    fib_done, fib_progress = counters(bases[0], n, adding)
    flows_done, flows_progress = counters(bases[1], n, adding)
    with Poller(fib.count, 0.01) as fib_poll, Poller(lambda: flow_count(SWITCH, "table=1")) as switch_poll:
        t0 = time.monotonic()
        feed.announce(adding)
        t_feed = time.monotonic()
        t_fib = fib_poll.wait(fib_done, timeout)
        t_done = switch_poll.wait(flows_done, timeout)
    fib_curve = _curve(fib_poll, t0, fib_progress)
    switch_curve = _curve(switch_poll, t0, flows_progress)
    e2e = curve_latencies(switch_curve, n, t0, t_feed)
    share = curve_delays(fib_curve, switch_curve, n)
    t_first = next((t for t, done in switch_curve if done > 0), t_done)
    return {"seconds": t_done - t0, "feed_seconds": t_feed - t0, "fib_seconds": t_fib - t0,
            "first_flow_seconds": t_first - t0, "rate": n / (t_done - t0), "fib_rate": n / (t_fib - t0),
            "lat_p50_ms": percentile(e2e, 50) * 1000, "lat_p99_ms": percentile(e2e, 99) * 1000,
            "share_p50_ms": percentile(share, 50) * 1000, "share_p99_ms": percentile(share, 99) * 1000,
            "polls": {"fib": len(fib_curve), "switch": len(switch_curve)}}


def _curve(poller: Poller, t0: float, progress: Callable[[int], int]) -> list[tuple[float, int]]:
    return [(t, progress(c)) for t, c in poller.samples if t >= t0]


def run(ctx: Context) -> list[Row]:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-bgp-", dir=ctx.run_dir))
    raw: dict[str, Any] = {"feed": f"{PEER} (FRR bgpd): [no] redistribute kernel of N preloaded blackhole routes",
                           "sizes": {}}
    ctx.raw["bgp"] = raw
    rows: list[Row] = []
    ctx.say(f"bgp: bringing up {TOPOLOGY.name}; sizes {ctx.bgp_sizes}, {ctx.repeat} repeats")
    with PlainBridge("bnb-ofs") as bridge, Stack(TOPOLOGY, run_dir) as stack:
        wait_for(lambda: stack.status()["datapaths"] and session_established(VM, PEER_IP), 90, 0.2)
        stack.wait_verify_clean(30)
        neigh = sh(["ip", "-n", VM, "neigh", "show", PEER_IP, "dev", "eth1"]).split()
        peer_mac = neigh[neigh.index("lladdr") + 1]
        fib = NetnsFib(VM)
        feed = Feed(PEER, PEER_AS)
        bases = (fib.count(), flow_count(SWITCH, "table=1"))
        assert stack.server and stack.controller
        pids = {"server": [stack.server.pid], "controller": [stack.controller.pid],
                "client": stack.client_pids(VM)}
        ctx.say(f"bgp: session up; {bases[0]} prefixes in {VM}'s FIB, {bases[1]} flows in {SWITCH} table 1")
        for n in ctx.bgp_sizes:
            repeat = ctx.repeat if n < 100_000 else min(ctx.repeat, 3)
            timeout = max(60.0, n / 1000)  # BGP alone manages ~10k routes/s here
            feed.load(n)
            adds: list[dict[str, Any]] = []
            dels: list[dict[str, Any]] = []
            b_adds: list[float] = []
            b_dels: list[float] = []
            verify_s: list[float] = []
            errors: list[str] = []
            for r in range(repeat):
                b_adds.append(bundle_baseline(bridge, n, peer_mac, delete=False))
                b_dels.append(bundle_baseline(bridge, n, peer_mac, delete=True))
                try:
                    adds.append(timed_feed(feed, n, True, bases, fib, timeout))
                    ctx.say(f"bgp: N={n} run {r + 1}/{repeat}: announce {adds[-1]['seconds']:.2f} s "
                            f"({adds[-1]['rate']:,.0f}/s; {VM}'s FIB alone {adds[-1]['fib_seconds']:.2f} s)")
                    if r == repeat - 1:
                        verify_s.append(timed_verify(stack, max(60.0, n / 500)))
                    dels.append(timed_feed(feed, n, False, bases, fib, timeout))
                    ctx.say(f"bgp: N={n} run {r + 1}/{repeat}: withdraw {dels[-1]['seconds']:.2f} s "
                            f"({dels[-1]['rate']:,.0f}/s; {VM}'s FIB alone {dels[-1]['fib_seconds']:.2f} s)")
                    if r == repeat - 1:
                        verify_s.append(timed_verify(stack, 60.0))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    ctx.say(f"bgp: N={n} run {r + 1} failed: {errors[-1]}; withdrawing the routes")
                    feed.announce(False)
                    wait_for(lambda: flow_count(SWITCH, "table=1") <= bases[1], timeout, 0.5)
                    break
            rss = {name: max((peak_rss_kb(p) or 0 for p in ps), default=0) for name, ps in pids.items()}
            raw["sizes"][str(n)] = {"add": adds, "delete": dels, "baseline_add_s": b_adds,
                                    "baseline_delete_s": b_dels, "verify_s": verify_s, "peak_rss_kb": rss,
                                    "errors": errors}
            rows += _rows(n, adds, dels, b_adds, b_dels, verify_s, rss, errors)
    return rows


def _rows(n: int, adds: list[dict[str, Any]], dels: list[dict[str, Any]], b_adds: list[float],
          b_dels: list[float], verify_s: list[float], rss: dict[str, int], errors: list[str]) -> list[Row]:
    bench = f"bgp N={n:,}"
    fib_label = f"BGP to {VM}'s kernel FIB alone"
    err = ("; FAILED: " + "; ".join(errors)) if errors else ""
    verified = (f"verify clean after the last announce/withdraw in {', '.join(f'{v:.1f}' for v in verify_s)} s"
                if len(verify_s) == 2 else "verify not reached")
    rows: list[Row] = []
    for phase, runs, bundle, label in (("announce", adds, b_adds, "ovs-ofctl --bundle add-flows"),
                                       ("withdraw", dels, b_dels, "ovs-ofctl --bundle delete_strict")):
        rows += [
            Row(bench, f"{phase}: time to s1 done", "s", Summary.of(a["seconds"] for a in runs),
                Summary.of(a["fib_seconds"] for a in runs), fib_label,
                note=(f"clock from {PEER}'s {'' if phase == 'announce' else 'no '}redistribute kernel (the command took "
                      f"{Summary.of(a['feed_seconds'] for a in runs).median:.2f} s median) to {SWITCH} holding all N "
                      f"flows; first flow after {Summary.of(a['first_flow_seconds'] for a in runs).median:.2f} s; "
                      f"baseline = the same announcement reaching {VM}'s FIB; {verified}{err}")),
            Row(bench, f"{phase}: routes/s", "1/s", Summary.of(a["rate"] for a in runs),
                Summary.of(n / b for b in bundle), label, PUBLISHED_RATE if phase == "announce" else ""),
            Row(bench, f"{phase}: per-route latency p50, announcement to flow", "ms",
                Summary.of(a["lat_p50_ms"] for a in runs)),
            Row(bench, f"{phase}: per-route latency p99, announcement to flow", "ms",
                Summary.of(a["lat_p99_ms"] for a in runs)),
            Row(bench, f"{phase}: per-route latency p50, VM FIB to flow", "ms",
                Summary.of(a["share_p50_ms"] for a in runs),
                note="routeflow's share: the k-th route into the VM's FIB paired with the k-th flow into the "
                     "switch, both sampled while the routes travel"),
            Row(bench, f"{phase}: per-route latency p99, VM FIB to flow", "ms",
                Summary.of(a["share_p99_ms"] for a in runs)),
        ]
    rows += [Row(bench, f"peak RSS (VmHWM) {name}", "MB", Summary.of([kb / 1024]), extra={"kb": kb},
                 published="target < 1 GB") for name, kb in rss.items()]
    return rows
