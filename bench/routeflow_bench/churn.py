"""Route churn on rftest2 (issue 13 item 3): rA's kernel FIB changes at 10,000 changes/s
for 60 s (``--quick``: 5 s), as a flapping BGP peer would make it, while the other VMs'
slow path is probed.

The churn (:mod:`routeflow.lab.churn`): a window of 5,000 prefixes of a real BGP table
sliding through a pool of 20,000, through rA's OSPF neighbours, written into rA's FIB
over Netlink. Measured:

* the changes per second the generator achieved;
* the slow-path RTT of rB, rC and rD (h2, h3, h4 pinging their gateway, answered by the
  VM across the trunk) during the churn against the same probes on the idle stack just
  before: the prober's fixed-rate ICMP stream (:mod:`.prober`), 10 ms apart;
* the peak RSS (VmHWM) of the RF-Server, the RF-Controller and rA's RF-Client, against
  their VmHWM on the idle stack, and their RSS growth over the second half of the churn
  (VmRSS sampled every 0.5 s): bounded memory means none;
* routes lost once the churn stops with its final set known: the planned set against rA's
  kernel FIB and against the server's view of rA, and ``routeflow verify`` (every switch
  flow against its VM's FIB) clean; the seconds from the last change to a clean verify;
* the flow changes the server sent to sA meanwhile, and the rate the stack sustained end
  to end: the churn's changes over the time from its first change to a clean verify.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from routeflow.client.fib import proto_name
from routeflow.harness import Stack, ping, wait_for
from routeflow.lab import churn
from routeflow.lab.churn import ChurnOptions, ChurnReport
from routeflow_bench import install
from routeflow_bench.common import Context, peak_rss_kb
from routeflow_bench.parse import parse_proc_status_kb
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary, percentile, probe_rtts

VM, SWITCH_DPID = "rA", "0x1"
#: The other VMs: (VM, the host below it, its gateway address on that host's subnet).
OTHERS = (("rB", "h2", "172.31.2.1"), ("rC", "h3", "172.31.3.1"), ("rD", "h4", "172.31.4.1"))
RATE = 10_000.0
PROBE_INTERVAL = 0.01
PROBER = str(Path(__file__).with_name("prober.py"))
#: Seconds the churn generator may take before its clock starts (reading the table,
#: encoding the messages): the probes during the churn run this much longer.
CHURN_PREP = 15.0


def start_probes(seconds: float) -> dict[str, subprocess.Popen[str]]:
    """The prober from each other VM's host to its gateway, for ``seconds``."""
    return {vm: subprocess.Popen(["ip", "netns", "exec", host, sys.executable, PROBER, dst, str(PROBE_INTERVAL),
                                  str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for vm, host, dst in OTHERS}


def probe_results(procs: dict[str, subprocess.Popen[str]], timeout: float) -> dict[str, dict[str, Any]]:
    out = {}
    for vm, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"prober to {vm} exited {proc.returncode}: {stderr.strip()[-300:]}")
        out[vm] = json.loads(stdout)
    return out


class Sampler:
    """Every ``interval`` s, in a thread: VmRSS (kB) of ``rss_pids`` and CPU seconds used so
    far by ``cpu_pids``, as (time, {name: value}) rows."""

    def __init__(self, rss_pids: dict[str, int], cpu_pids: dict[str, int], interval: float = 0.5) -> None:
        self.rss_pids, self.cpu_pids, self.interval = rss_pids, cpu_pids, interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.cpu: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            row = {}
            for name, pid in self.rss_pids.items():
                try:
                    row[name] = parse_proc_status_kb(Path(f"/proc/{pid}/status").read_text()).get("VmRSS", 0)
                except OSError:
                    continue
            now = time.time()
            self.samples.append((now, row))
            self.cpu.append((now, {name: cpu_seconds(pid) for name, pid in list(self.cpu_pids.items())}))
            self._stop.wait(self.interval)

    def growth_kb(self, name: str, start: float, end: float) -> int:
        """VmRSS at ``end`` minus at the middle of ``start``..``end``: growth in the second half."""
        mid = (start + end) / 2
        at = [row.get(name, 0) for t, row in self.samples if mid <= t <= end and name in row]
        return at[-1] - at[0] if at else 0

    def cpu_share(self, start: float, end: float) -> dict[str, float]:
        """Each process's CPU use between the samples nearest ``start`` and ``end``, in % of a core."""
        inside = [(t, row) for t, row in self.cpu if start - self.interval / 2 <= t <= end + self.interval / 2]
        if len(inside) < 2:
            return {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        return {name: 100 * (last[name] - first.get(name, 0.0)) / (t1 - t0)
                for name in last if name in first and first[name] > 0}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def ovs_vswitchd_pid() -> int:
    return int(Path("/run/openvswitch/ovs-vswitchd.pid").read_text())


def _flow_mods(stack: Stack) -> int:
    return next(dp["flow_mods_sent"] for dp in stack.status(detail=False)["datapaths"] if dp["dpid"] == SWITCH_DPID)


def server_view(stack: Stack, proto: int) -> list[str]:
    """The churned prefixes the server holds for rA."""
    vm = next(v for v in stack.status()["vms"] if v["name"] == VM)
    return sorted(r["prefix"] for r in vm["routes"] if r["proto"] == proto_name(proto))


def catch_up(stack: Stack, report: churn.Churned, mods_before: int, timeout: float,
             raw: dict[str, Any]) -> tuple[float | None, float | None]:
    """Seconds from the churn's last change until the server had sent sA as many flow
    changes as the churn made (polled cheaply, every 50 ms), and until a verify asked
    then is clean (None: not within ``timeout``). Verify is not polled from the start:
    each one dumps rA's FIB and sA's table, load that would slow what it measures."""
    deadline = time.monotonic() + timeout
    sent_s = None
    while time.monotonic() < deadline:
        if _flow_mods(stack) - mods_before >= report.changes:
            sent_s = time.time() - report.ended_at
            break
        time.sleep(0.05)
    while time.monotonic() < deadline:
        asked = time.time()
        result = stack.verify()
        if result.ok:
            return sent_s, asked - report.ended_at
        raw["verify_differences"] = result.differences[:50]
        time.sleep(0.2)
    return sent_s, None


def run(ctx: Context) -> list[Row]:
    duration = 5.0 if ctx.quick else 60.0
    idle_s = 3.0 if ctx.quick else 10.0
    run_dir = Path(tempfile.mkdtemp(prefix="bench-churn-", dir=ctx.run_dir))
    raw: dict[str, Any] = {"rate": RATE, "duration_s": duration, "vm": VM}
    ctx.raw["churn"] = raw
    ctx.say(f"churn: bringing up rftest2; {RATE:,.0f} changes/s for {duration:.0f} s in {VM}")
    with Stack("rftest2", run_dir) as stack:
        wait_for(lambda: stack.all_pairs_ok() and stack.verify().ok, 120, 0.2)
        for _, host, dst in OTHERS:  # warm the ARP caches: no probe pays for a resolution
            ping(host, dst, count=2, interval=0.05)
        assert stack.server is not None and stack.controller is not None
        pids = {"server": stack.server.pid, "controller": stack.controller.pid,
                f"client {VM}": stack.client_pids(VM)[0]}
        idle_probes = probe_results(start_probes(idle_s), idle_s + 30)
        idle_rss = {name: peak_rss_kb(pid) or 0 for name, pid in pids.items()}
        mods_before = _flow_mods(stack)
        # Where the CPU goes during the churn: routeflow's three processes, Open vSwitch,
        # rA's zebra (it reads every route change too) and the generator itself.
        cpu_pids = {**pids, "ovs-vswitchd": ovs_vswitchd_pid(), f"zebra {VM}": stack.daemon_pid(VM, "zebra") or 0}
        with Sampler(pids, cpu_pids) as sampler:
            probes = start_probes(CHURN_PREP + duration)
            # --profile: py-spy the three processes while the churn runs.
            spies = install._profile(ctx, {n: [p] for n, p in pids.items()}, "churn") if ctx.profile else {}
            proc = churn.spawn(VM, ChurnOptions(RATE, duration))
            cpu_pids["generator"] = proc.pid  # ip netns exec execs it: the same process
            try:
                done = churn.churned(proc)
                backlog = done.changes - (_flow_mods(stack) - mods_before) if done else 0
                caught = catch_up(stack, done, mods_before, max(60.0, duration * 5), raw) if done else (None, None)
                report = churn.collect(proc, duration + 120)
                if spies:
                    raw["profile"] = install._stop_profile(ctx, spies, "churn")
                sent_s, clean_s = caught
                ctx.say(f"churn: {report.changes:,} changes in {report.seconds:.1f} s ({report.achieved_rate:,.0f}/s);"
                        f" {backlog:,} not yet sent to sA then; all sent after {sent_s} s, verify clean after "
                        f"{clean_s} s")
            finally:
                during = probe_results(probes, CHURN_PREP + duration + 60)
        for name, prof in raw.get("profile", {}).items():
            ctx.say(f"churn: py-spy {name}: {prof['samples'] / 200:.1f} CPU-s; self: "
                    + ", ".join(f"{f} {pct}%" for f, pct in prof["self"][:8]))
        cpu = sampler.cpu_share(report.started_at, report.ended_at)
        cpu["generator"] = 100 * report.cpu_seconds / report.seconds
        raw["cpu_percent_during_churn"] = cpu
        raw["backlog_at_end"] = backlog
        raw["all_sent_s"] = sent_s
        held = server_view(stack, report.proto)
        mods = _flow_mods(stack) - mods_before
        peak = {name: peak_rss_kb(pid) or 0 for name, pid in pids.items()}
        growth = {name: sampler.growth_kb(name, report.started_at, report.ended_at) for name in pids}
        raw["rss_samples"] = sampler.samples
    return rows(report, clean_s, held, mods, idle_probes, during, idle_rss, peak, growth, raw)


def rows(report: ChurnReport, clean_s: float | None, held: list[str], mods: int,
         idle_probes: dict[str, dict[str, Any]], during: dict[str, dict[str, Any]], idle_rss: dict[str, int],
         peak: dict[str, int], growth: dict[str, int], raw: dict[str, Any]) -> list[Row]:
    """The table's rows, and the raw figures behind them into ``raw``."""
    expected = set(report.final_expected)
    lost_server = sorted(expected ^ set(held))
    raw.update({"report": {k: v for k, v in msgspec.structs.asdict(report).items()
                           if k not in ("final_expected", "final_kernel")},
                "final_routes": len(expected), "lost_in_kernel": report.lost_in_kernel[:100],
                "lost_in_server": lost_server[:100], "verify_clean_s": clean_s, "flow_mods_sent": mods,
                "idle_rss_kb": idle_rss, "peak_rss_kb": peak, "rss_growth_second_half_kb": growth})
    bench = f"churn {report.rate:,.0f}/s x {report.duration:.0f} s"
    note = (f"rA's FIB: {report.window:,} of {report.pool:,} real BGP-table prefixes installed at once, the oldest "
            f"withdrawn and the next announced, via {len(report.gateways)} neighbours; "
            f"{report.adds:,} adds, {report.deletes:,} deletes, kernel errors {report.errors or 'none'}")
    rows = [Row(bench, "changes/s achieved (rA's kernel FIB)", "1/s", Summary.of(report.per_second[:-1] or
                                                                                   report.per_second),
                published=f"target {report.rate:,.0f}/s", note=note)]
    end_to_end = report.changes / (report.seconds + clean_s) if clean_s is not None else float("nan")
    rows.append(Row(bench, "changes/s sustained end to end (first change to verify clean)", "1/s",
                    Summary.of([end_to_end]), note=f"flow changes sent to sA: {mods:,}"))
    rows.append(Row(bench, "backlog when the churn stops (changes not yet sent to sA)", "",
                    Summary.of([float(raw["backlog_at_end"])]), published="0 if routeflow keeps up"))
    rows.append(Row(bench, "seconds from the last change until all were sent to sA", "s",
                    Summary.of([raw["all_sent_s"]] if raw["all_sent_s"] is not None else [])))
    for name, share in raw["cpu_percent_during_churn"].items():
        rows.append(Row(bench, f"CPU during the churn: {name}", "% of a core", Summary.of([share]),
                        note=(f"user + system CPU over the {report.seconds:.0f} s of the churn (/proc/PID/stat "
                              f"sampled every 0.5 s); this machine has {os.cpu_count()} CPUs")
                        if name == "server" else ""))
    rtt_note = (f"fixed-rate ICMP probes every {PROBE_INTERVAL * 1000:.0f} ms from each host to its gateway (the "
                "VM, across the trunk), idle just before the churn vs during it; value = every probe's RTT")
    for vm, host, dst in OTHERS:
        idle_rtts, idle_lost = probe_rtts(idle_probes[vm]["sent"], idle_probes[vm]["reply"], 0, float("inf"))
        rtts, lost = probe_rtts(during[vm]["sent"], during[vm]["reply"], report.started_at, report.ended_at)
        raw.setdefault("rtt", {})[vm] = {"idle_p90_ms": percentile(idle_rtts, 90), "p90_ms": percentile(rtts, 90),
                                         "idle_lost": idle_lost, "lost": lost, "n": len(rtts)}
        rows.append(Row(bench, f"slow path {host}->{vm} RTT during churn", "ms", Summary.of(rtts),
                        Summary.of(idle_rtts), "idle", "target <= 2x idle",
                        note=rtt_note if vm == OTHERS[0][0] else ""))
        rows.append(Row(bench, f"slow path {host}->{vm} RTT p90 during churn", "ms",
                        Summary.of([percentile(rtts, 90)]), Summary.of([percentile(idle_rtts, 90)]), "idle",
                        note=f"probes lost: {lost} during, {idle_lost} idle" if lost or idle_lost else ""))
    for name in peak:
        rows.append(Row(bench, f"peak RSS (VmHWM) {name}", "MB", Summary.of([peak[name] / 1024]),
                        Summary.of([idle_rss[name] / 1024]), "VmHWM before the churn", "target < 1 GB",
                        extra={"kb": peak[name]}))
        rows.append(Row(bench, f"RSS growth {name}, second half of the churn", "MB",
                        Summary.of([growth[name] / 1024]), published="bounded: ~0"))
    lost_total = len(report.lost_in_kernel) + len(lost_server)
    rows.append(Row(bench, "routes lost (final set vs rA's FIB and the server's view)", "",
                    Summary.of([float(lost_total)]), published="target 0",
                    note=(f"final set: {len(expected):,} churned routes; FIB differs in {len(report.lost_in_kernel)}, "
                          f"server view in {len(lost_server)}; switch vs FIB: verify "
                          + ("clean" if clean_s is not None else "NOT clean (raw: verify_differences)")),
                    status="ok" if clean_s is not None else "failed"))
    rows.append(Row(bench, "seconds from the last change to verify clean", "s",
                    Summary.of([clean_s] if clean_s is not None else []), published="-",
                    status="ok" if clean_s is not None else "failed"))
    return rows
