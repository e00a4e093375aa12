"""Resilience on rftest2: one process killed with ``kill -9`` under a 1 ms ICMP probe stream
h1 -> h4 (sA, sD: the flows of rA and rD), per component.

Each process comes back as it does in production: the RF-Controller and the RF-Server as
their systemd units restart them (the controller 1 s later; the server after 2 s, so that
the switches and clients really are without it for a while), an RF-Client and the routing
daemons started again by the server's supervisors. Per kill: milliseconds of probe loss
(lost probes x the send interval), seconds from the process's return to a clean
``routeflow verify``, and the flow and group changes the server sent meanwhile.

The baseline, measured in the same run: the same stream and the same wait with nothing
killed (the noise floor of loss on this machine), and the seconds a verify takes on the
quiet stack. rB's daemons are off h1 -> h4; zebra of rD is on it (a routing event there,
README "Restarts").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from routeflow.harness import Stack, wait_for
from routeflow_bench.common import Context
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary, probe_losses

SRC, DST = "h1", "172.31.4.100"
INTERVAL = 0.001
PROBER = str(Path(__file__).with_name("prober.py"))
#: How long the stream runs after the kill: long enough for each process to return.
AFTER = 8.0
#: The systemd units' RestartSec, and how long the server is left down.
CONTROLLER_DOWN, SERVER_DOWN = 1.0, 2.0


def _flow_mods(stack: Stack) -> dict[str, int]:
    return {dp["dpid"]: dp["flow_mods_sent"] for dp in stack.status(detail=False)["datapaths"]}


def quiet(stack: Stack) -> None:
    """Every pair pings, verify is clean and the server has sent nothing for 3 s."""
    wait_for(lambda: stack.all_pairs_ok() and stack.verify().ok, 120, 0.5)
    mods, changed = [_flow_mods(stack)], [time.monotonic()]

    def still() -> bool:
        now = _flow_mods(stack)
        if now != mods[0]:
            mods[0], changed[0] = now, time.monotonic()
        return time.monotonic() - changed[0] >= 3.0

    wait_for(still, 120, 0.2)


def kill_under_probes(stack: Stack, kill: Callable[[], None], back: Callable[[], bool],
                      counters_reset: bool) -> dict[str, Any]:
    """``kill`` under the probe stream; loss after it, seconds from ``back`` to a clean verify,
    flow changes sent meanwhile (a new server's counters start at 0)."""
    quiet(stack)
    before = {} if counters_reset else _flow_mods(stack)
    lead = 1.0
    proc = subprocess.Popen(["ip", "netns", "exec", SRC, sys.executable, PROBER, DST, str(INTERVAL),
                             str(lead + AFTER)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(lead)
    t_kill = time.time()
    kill()
    wait_for(back, 30, 0.02)
    returned = time.monotonic()
    stack.wait_verify_clean(timeout=30, interval=0.05)
    clean_s = time.monotonic() - returned
    out, err = proc.communicate(timeout=lead + AFTER + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"prober exited {proc.returncode}: {err.strip()[-300:]}")
    data = json.loads(out)
    phase = probe_losses(data["sent"], data["reply"], [t_kill])["phases"][0]
    after = _flow_mods(stack)
    rewritten = sum(n - before.get(dpid, 0) for dpid, n in after.items())
    return {"loss_ms": phase["loss_ms"], "lost": phase["lost"], "clean_s": clean_s, "rewritten": rewritten}


def _components(stack: Stack) -> dict[str, tuple[Callable[[], None], Callable[[], bool], bool]]:
    """Component -> (kill it, is it back, does its return reset the flow-mod counters)."""
    def kill_controller() -> None:
        stack.stop_controller(signal.SIGKILL)
        time.sleep(CONTROLLER_DOWN)
        stack.start_controller()

    def kill_server() -> None:
        assert stack.server is not None
        stack.server.kill()
        stack.server.wait(30)
        time.sleep(SERVER_DOWN)
        stack.start_server()

    client: list[int] = []

    def kill_client() -> None:
        client[:] = stack.client_pids("rA")
        os.kill(client[0], signal.SIGKILL)

    def client_back() -> bool:
        vm = next(v for v in stack.status(detail=False)["vms"] if v["name"] == "rA")
        return stack.client_pids("rA") not in ([], client) and bool(vm["client_connected"])

    def daemon(vm: str, name: str) -> tuple[Callable[[], None], Callable[[], bool], bool]:
        old: list[int | None] = []

        def kill() -> None:
            old[:] = [stack.daemon_pid(vm, name)]
            stack.kill_daemon(vm, name)
        return kill, lambda: stack.daemon_pid(vm, name) not in (None, *old), False

    return {
        "RF-Controller": (kill_controller, lambda: bool(stack.status(detail=False)["controller_connected"]), False),
        "RF-Server": (kill_server, lambda: bool(stack.status(detail=False)["controller_connected"]), True),
        "RF-Client rA (on the path)": (kill_client, client_back, False),
        "ospfd of rB": daemon("rB", "ospfd"),
        "zebra of rB": daemon("rB", "zebra"),
        "zebra of rD (on the path)": daemon("rD", "zebra"),
    }


def run(ctx: Context) -> list[Row]:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-resilience-", dir=ctx.run_dir))
    results: dict[str, list[dict[str, Any]]] = {}
    ctx.raw["resilience"] = results
    ctx.say(f"resilience: bringing up rftest2; {ctx.repeat} kill -9 of each component under a 1 ms probe stream")
    with Stack("rftest2", run_dir) as stack:
        wait_for(stack.all_pairs_ok, 120, 0.5)
        components = _components(stack)
        for i in range(ctx.repeat):
            results.setdefault("nothing", []).append(kill_under_probes(stack, lambda: None, lambda: True, False))
            for name, (kill, back, reset) in components.items():
                r = kill_under_probes(stack, kill, back, reset)
                results.setdefault(name, []).append(r)
                ctx.say(f"resilience: {name} {i + 1}/{ctx.repeat}: {r['loss_ms']:.0f} ms lost, verify clean "
                        f"{r['clean_s']:.2f} s after its return, {r['rewritten']} flow changes")
            # Verify on the quiet stack: the floor of "seconds until verify clean".
            started = time.monotonic()
            stack.wait_verify_clean(timeout=30, interval=0.05)
            results.setdefault("verify", []).append({"clean_s": time.monotonic() - started})
    idle = results["nothing"]
    note = ("1 ms ICMP probes h1->h4 (sA, sD) from the kill to 8 s after; controller back after 1 s, server after "
            "2 s (their systemd units), clients and daemons restarted by the server")
    rows: list[Row] = []
    for name in components:
        runs = results[name]
        daemon = name.split()[0] in ("ospfd", "zebra")
        routing_event = daemon and "on the path" in name
        rows += [
            Row("resilience", f"{name}: loss", "ms", Summary.of(r["loss_ms"] for r in runs),
                Summary.of(r["loss_ms"] for r in idle), "nothing killed",
                "a routing event on its path" if routing_event else "target 0", note=note if not rows else ""),
            Row("resilience", f"{name}: verify clean after its return", "s", Summary.of(r["clean_s"] for r in runs),
                Summary.of(r["clean_s"] for r in results["verify"]), "a verify of the quiet stack", "target <= 2 s"),
            Row("resilience", f"{name}: flow changes sent", "", Summary.of(float(r["rewritten"]) for r in runs),
                Summary.of(float(r["rewritten"]) for r in idle), "nothing killed",
                "routes of the restarted daemon's VM" if daemon else "target 0"),
        ]
    return rows
