"""Controller failover on rftest2: two RF-Controllers, every switch connected to both, the
active one (OpenFlow master) killed with ``kill -9`` under a 1 ms ICMP probe stream h1 -> h4.

Per kill: seconds from the kill until the other controller is master of every datapath (the
RF-Server elects it in a newer term, it asks each switch for mastership with that term as
generation id; its role replies say so), milliseconds of probe loss (lost probes x the send
interval; the data plane needs no controller, so the target is 0), seconds from the
takeover to a clean ``routeflow verify``, and the flow and group changes sent (the new
master reads every table and sends only the difference: target 0). The killed controller
is then started again, stands by, and the next kill is of the other: each kill is a
failover, alternately each way. Baseline: the same probe stream with nothing killed.
"""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from routeflow.harness import STANDBY_OF_PORT, Stack, wait_for
from routeflow_bench.common import Context
from routeflow_bench.report import Row
from routeflow_bench.resilience import kill_under_probes
from routeflow_bench.stats import Summary

#: The controllers' OpenFlow ports: the stack's own and the standby's.
PORTS = (6653, STANDBY_OF_PORT)


def _failover(stack: Stack) -> dict[str, Any]:
    """Kill the active controller; the result of :func:`kill_under_probes` and the failover time."""
    ports = stack.controller_ports()
    assert ports is not None
    active, standing_by = ports
    (survivor,) = standing_by
    times: dict[str, float] = {}

    def kill() -> None:
        times["kill"] = time.monotonic()
        if active == PORTS[0]:
            stack.stop_controller(signal.SIGKILL)
        else:
            stack.stop_standby_controller(signal.SIGKILL)

    def took_over() -> bool:
        if stack.controller_ports() != (survivor, frozenset()):
            return False
        times["master"] = time.monotonic()
        return True

    result = kill_under_probes(stack, kill, took_over, False)
    result["failover_s"] = times["master"] - times["kill"]
    # The killed one comes back, standing by, for the next failover the other way.
    if active == PORTS[0]:
        stack.start_controller()
    else:
        stack.start_standby_controller()
    wait_for(lambda: stack.controller_ports() == (survivor, frozenset({active})), 30, 0.1)
    return result


def run(ctx: Context) -> list[Row]:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-failover-", dir=ctx.run_dir))
    results: dict[str, list[dict[str, Any]]] = {"nothing": [], "failover": []}
    ctx.raw["controller-failover"] = results
    ctx.say(f"controller-failover: bringing up rftest2 with two controllers; {ctx.repeat} kill -9 of the active one")
    with Stack("rftest2", run_dir) as stack:
        wait_for(stack.all_pairs_ok, 120, 0.5)
        stack.start_standby_controller()
        wait_for(lambda: stack.controller_ports() == (PORTS[0], frozenset({PORTS[1]})), 30, 0.1)
        for i in range(ctx.repeat):
            results["nothing"].append(kill_under_probes(stack, lambda: None, lambda: True, False))
            r = _failover(stack)
            results["failover"].append(r)
            ctx.say(f"failover {i + 1}/{ctx.repeat}: master after {r['failover_s'] * 1000:.0f} ms, "
                    f"{r['loss_ms']:.0f} ms lost, verify clean {r['clean_s']:.2f} s after, "
                    f"{r['rewritten']} flow changes")
    runs, idle = results["failover"], results["nothing"]
    note = ("rftest2, every switch and the RFVS connected to both controllers; the active one killed with kill -9 "
            "under 1 ms ICMP probes h1->h4 (sA, sD); the other master of every datapath by its role replies "
            "(routeflow status); alternately each way")
    return [
        Row("controller-failover", "controller failover: kill -9 to the other master of every datapath", "s",
            Summary.of(r["failover_s"] for r in runs), note=note),
        Row("controller-failover", "controller failover: loss", "ms", Summary.of(r["loss_ms"] for r in runs),
            Summary.of(r["loss_ms"] for r in idle), "nothing killed", "target 0"),
        Row("controller-failover", "controller failover: verify clean after the takeover", "s",
            Summary.of(r["clean_s"] for r in runs), published="target <= 2 s"),
        Row("controller-failover", "controller failover: flow changes sent", "", Summary.of(float(r["rewritten"]) for r in runs),
            Summary.of(float(r["rewritten"]) for r in idle), "nothing killed", "target 0"),
    ]
