"""Route churn on rftest2 (issue 13 item 3): rA's kernel FIB changes at 10,000 changes/s
for 60 s (``--quick``: 5 s), as a flapping BGP peer would make it, while the other VMs'
slow path is probed.

The churn (:mod:`routeflow.lab.churn`): a window of 5,000 prefixes of a real BGP table
sliding through a pool of 20,000, through rA's OSPF neighbours, written into rA's FIB
over Netlink. Measured:

* the changes per second the generator achieved;
* the slow-path RTT of rB, rC and rD (h2, h3, h4 pinging their gateway, answered by the
  VM across the trunk) during the churn against the same probes on the idle stack just
  before: the prober's fixed-rate ICMP stream (:mod:`.prober`), 10 ms apart. And the
  baseline that tells routeflow's share from Open vSwitch's: the same probes while the
  same change stream goes as flow mods (``ovs-ofctl``, every 0.1 s) into a plain bridge
  of the same ovs-vswitchd, routeflow idle (all lab switches share one userspace
  datapath, whose main thread both applies flow mods and forwards the veth ports' packets);
* the CPU share of each process during the churn, and of the whole machine (other
  users' processes included: the benchmark does not own the machine);
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

import ipaddress
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

from routeflow.client.netlink import proto_name
from routeflow.harness import Stack, ping, wait_for
from routeflow.lab import churn
from routeflow.lab.churn import ChurnOptions, ChurnPlan, ChurnReport, ChurnRoute, due
from routeflow_bench import install
from routeflow_bench.common import Context, PlainBridge, peak_rss_kb, sh
from routeflow_bench.parse import parse_proc_status_kb
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary, percentile, probe_rtts

VM, SWITCH_DPID = "rA", "0x1"
#: The other VMs: (VM, the host below it, its gateway address on that host's subnet).
OTHERS = (("rB", "h2", "172.31.2.1"), ("rC", "h3", "172.31.3.1"), ("rD", "h4", "172.31.4.1"))
RATE = 10_000.0
PROBE_INTERVAL = 0.01
PROBER = str(Path(__file__).with_name("prober.py"))
#: The whole machine's CPU (every process, ours and anyone else's) in :class:`Sampler`.
MACHINE = "machine, all processes"
#: The baseline: the same changes as flow mods into a plain bridge of the same Open vSwitch.
BASELINE_BRIDGE = "bnb-churn"
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
            cpu = {name: cpu_seconds(pid) for name, pid in list(self.cpu_pids.items())}
            cpu[MACHINE] = machine_busy_seconds()
            self.cpu.append((now, cpu))
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


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have spent busy (/proc/stat), whoever used them."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


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


def flow_text(route: ChurnRoute, add: bool) -> str:
    """One ``ovs-ofctl`` flow line of the baseline: the prefix, as an LPM entry would be."""
    plen = ipaddress.ip_network(route.prefix).prefixlen
    match = f"table=0,priority={1000 + plen},ip,nw_dst={route.prefix}"
    return f"{match},actions=dec_ttl,mod_dl_dst:02:00:00:00:00:01,output:1\n" if add else match + "\n"


def ovs_flow_churn(bridge: str, plan: ChurnPlan, rate: float, duration: float, tick: float = 0.1) -> tuple[float, float,
                                                                                                           int]:
    """The churn's change stream straight into ``bridge`` as flow mods, no routeflow: every
    ``tick`` s one ``ovs-ofctl del-flows --strict`` and one ``add-flows`` of the changes
    then due. (start, end, changes), ``time.time()``."""
    total = int(rate * duration)
    done = 0
    started, start = time.time(), time.monotonic()
    while done < total:
        now = time.monotonic()
        elapsed = now - start
        n = due(rate, min(elapsed, duration), done, total, int(rate * tick * 10))
        text: dict[bool, list[str]] = {True: [], False: []}
        for i in range(done, done + n):
            add, index = plan.change(i)
            text[add].append(flow_text(plan.routes[index], add))
        for add, verb in ((False, "del-flows"), (True, "add-flows")):
            if text[add]:
                sh(["ovs-ofctl", "-O", "OpenFlow13", *([] if add else ["--strict"]), verb, bridge, "-"],
                   input="".join(text[add]))
        done += n
        if elapsed >= duration:
            break
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    return started, time.time(), done


def run(ctx: Context) -> list[Row]:
    duration = 5.0 if ctx.quick else 60.0
    idle_s = 3.0 if ctx.quick else 10.0
    run_dir = Path(tempfile.mkdtemp(prefix="bench-churn-", dir=ctx.run_dir))
    raw: dict[str, Any] = {"rate": RATE, "duration_s": duration, "vm": VM}
    ctx.raw["churn"] = raw
    ctx.say(f"churn: bringing up rftest2; {RATE:,.0f} changes/s for {duration:.0f} s in {VM}")
    with PlainBridge(BASELINE_BRIDGE) as bridge, Stack("rftest2", run_dir) as stack:
        wait_for(lambda: stack.all_pairs_ok() and stack.verify().ok, 120, 0.2)
        for _, host, dst in OTHERS:  # warm the ARP caches: no probe pays for a resolution
            ping(host, dst, count=2, interval=0.05)
        assert stack.server is not None and stack.controller is not None
        pids = {"server": stack.server.pid, "controller": stack.controller.pid,
                f"client {VM}": stack.client_pids(VM)[0]}
        # Where the CPU goes: routeflow's three processes, Open vSwitch, rA's zebra (it reads
        # every route change too), the generator, and the machine as a whole.
        cpu_pids = {**pids, "ovs-vswitchd": ovs_vswitchd_pid(), f"zebra {VM}": stack.daemon_pid(VM, "zebra") or 0}
        with Sampler(pids, cpu_pids) as sampler:
            idle_at = time.time()
            idle_probes = probe_results(start_probes(idle_s), idle_s + 30)
            raw["cpu_percent_idle"] = sampler.cpu_share(idle_at, time.time())
            idle_rss = {name: peak_rss_kb(pid) or 0 for name, pid in pids.items()}
            mods_before = _flow_mods(stack)
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
            held = server_view(stack, report.proto)
            mods = _flow_mods(stack) - mods_before
            # The baseline: the same stream as flow mods into a plain bridge of the same
            # ovs-vswitchd, routeflow idle, under the same probes.
            ctx.say(f"churn: baseline, {RATE:,.0f} flow mods/s into {BASELINE_BRIDGE} for {duration:.0f} s")
            plan = ChurnPlan(tuple(ChurnRoute(e.prefix, "192.0.2.1") for e in churn.read_table(
                churn.DEFAULT_TABLE, report.pool)), report.window)
            probes = start_probes(duration + 5)
            try:
                ovs_window = ovs_flow_churn(bridge.name, plan, RATE, duration)
            finally:
                ovs_probes = probe_results(probes, duration + 60)
            raw["ovs_baseline"] = {"changes": ovs_window[2], "seconds": ovs_window[1] - ovs_window[0]}
        for name, prof in raw.get("profile", {}).items():
            ctx.say(f"churn: py-spy {name}: {prof['samples'] / 200:.1f} CPU-s; self: "
                    + ", ".join(f"{f} {pct}%" for f, pct in prof["self"][:8]))
        cpu = sampler.cpu_share(report.started_at, report.ended_at)
        cpu["generator"] = 100 * report.cpu_seconds / report.seconds
        raw["cpu_percent_during_churn"] = cpu
        raw["cpu_percent_ovs_baseline"] = sampler.cpu_share(ovs_window[0], ovs_window[1])
        raw["backlog_at_end"] = backlog
        raw["all_sent_s"] = sent_s
        peak = {name: peak_rss_kb(pid) or 0 for name, pid in pids.items()}
        growth = {name: sampler.growth_kb(name, report.started_at, report.ended_at) for name in pids}
        raw["rss_samples"] = sampler.samples
    probes_by_phase = {"idle": (idle_probes, 0.0, float("inf")),
                       "churn": (during, report.started_at, report.ended_at),
                       "ovs": (ovs_probes, ovs_window[0], ovs_window[1])}
    return rows(report, clean_s, held, mods, probes_by_phase, idle_rss, peak, growth, raw)


def rows(report: ChurnReport, clean_s: float | None, held: list[str], mods: int,
         probes: dict[str, tuple[dict[str, dict[str, Any]], float, float]], idle_rss: dict[str, int],
         peak: dict[str, int], growth: dict[str, int], raw: dict[str, Any]) -> list[Row]:
    """The table's rows, and the raw figures behind them into ``raw``. ``probes``: phase
    (idle, churn, ovs) -> (prober output by VM, the phase's start and end)."""
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
        if name == MACHINE:
            continue
        rows.append(Row(bench, f"CPU during the churn: {name}", "% of a core", Summary.of([share]),
                        note=(f"user + system CPU over the {report.seconds:.0f} s of the churn (/proc/PID/stat "
                              f"sampled every 0.5 s); this machine has {os.cpu_count()} CPUs")
                        if name == "server" else ""))
    rtt_note = (f"fixed-rate ICMP probes every {PROBE_INTERVAL * 1000:.0f} ms from each host to its gateway (the "
                "VM, across the trunk): idle just before the churn, during it, and while a plain bridge of the same "
                "ovs-vswitchd takes the same changes as flow mods (ovs-ofctl, routeflow idle); value = every "
                "probe's RTT")
    for vm, host, _ in OTHERS:
        rtts: dict[str, list[float]] = {}
        lost: dict[str, int] = {}
        for phase, (data, start, end) in probes.items():
            rtts[phase], lost[phase] = probe_rtts(data[vm]["sent"], data[vm]["reply"], start, end)
        raw.setdefault("rtt", {})[vm] = {f"{phase}_p90_ms": percentile(r, 90) for phase, r in rtts.items()} | {
            "lost": lost, "n": {phase: len(r) for phase, r in rtts.items()}}
        rows.append(Row(bench, f"slow path {host}->{vm} RTT during churn", "ms", Summary.of(rtts["churn"]),
                        Summary.of(rtts["idle"]), "idle", "target <= 2x idle",
                        note=rtt_note if vm == OTHERS[0][0] else ""))
        rows.append(Row(bench, f"slow path {host}->{vm} RTT p90 during churn", "ms",
                        Summary.of([percentile(rtts["churn"], 90)]), Summary.of([percentile(rtts["idle"], 90)]),
                        "idle", note=f"probes lost: {lost}" if any(lost.values()) else ""))
        rows.append(Row(bench, f"slow path {host}->{vm} RTT, same flow mods into OVS alone", "ms",
                        Summary.of(rtts["ovs"]), Summary.of(rtts["idle"]), "idle"))
    ovs = raw["ovs_baseline"]
    rows.append(Row(bench, "flow mods/s achieved by the OVS-alone baseline", "1/s",
                    Summary.of([ovs["changes"] / ovs["seconds"]]), published=f"asked {report.rate:,.0f}/s",
                    note="one ovs-ofctl del-flows --strict and one add-flows every 0.1 s; fewer than asked when "
                         "ovs-ofctl cannot keep up: then the baseline disturbs OVS with fewer flow mods than "
                         "routeflow's churn did"))
    for phase, key in (("idle", "cpu_percent_idle"), ("churn", "cpu_percent_during_churn"),
                       ("OVS-alone baseline", "cpu_percent_ovs_baseline")):
        rows.append(Row(bench, f"machine CPU busy, {phase}", "% of a core",
                        Summary.of([raw[key].get(MACHINE, float("nan"))]),
                        note=f"every process on the machine ({os.cpu_count()} CPUs = {100 * (os.cpu_count() or 1)}%), "
                             "other users' included" if phase == "idle" else ""))
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
