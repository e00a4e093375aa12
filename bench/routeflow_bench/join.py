"""A switch joining (``examples/discovered``): seconds from its connection to its first
routed ping, the RF-Server making its VM from a template on the way.

Per repeat: switch sD connects (``routeflow lab switch sD join``); the server admits it,
makes VM sw4 (namespace, NICs, FRR, RF-Client), the VM's OSPF meets its neighbours over
unnumbered links, and the clock stops at the first ping h1 -> h4 (10 ms apart) that is
answered. Also: seconds to the admission decision, and to the VM's client having sent
its FIB. Baseline, in the same repeat: sD's links to the others cut until OSPF has
forgotten them, then restored, its VM running: what the network and OSPF take without a
VM to make. Then sD leaves for good and its VM is removed before the next repeat.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from routeflow.harness import Stack, ping, wait_for
from routeflow.lab import network
from routeflow_bench.common import Context
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary

SWITCH, VM, SOURCE, TARGET = "sD", "sw4", "h1", "10.1.4.100"
#: sD's links to the switches that were there before it.
LINKS = ("C-D", "D-A")


def _routed_after(stack: Stack, started: float) -> float:
    wait_for(lambda: ping(SOURCE, TARGET, timeout=0.2).ok, 60, 0.01)
    return time.monotonic() - started


def _synced(stack: Stack) -> bool:
    return any(vm["name"] == VM and vm["synced"] for vm in stack.status(detail=False)["vms"])


def _join(stack: Stack) -> dict[str, Any]:
    """sD joins with no VM: decision, VM synced, first routed ping (seconds from the connection)."""
    started = time.monotonic()
    decision = stack.join_switch(SWITCH)
    assert decision is not None and decision["admitted"], decision
    decided = time.monotonic() - started
    wait_for(lambda: _synced(stack), 30, 0.02)
    synced = time.monotonic() - started
    return {"decided_s": decided, "synced_s": synced, "routed_s": _routed_after(stack, started)}


def _relearnt(stack: Stack) -> float:
    """sD's links to the others cut until OSPF forgets them, then restored (its VM running):
    seconds from the restoration to the first routed ping."""
    for link in LINKS:
        network.set_link(link, "down", state_path=stack.lab_state)
    wait_for(lambda: "10.1.4.0/24" not in route_table("sw1"), 30, 0.1)
    started = time.monotonic()
    for link in LINKS:
        network.set_link(link, "up", state_path=stack.lab_state)
    return _routed_after(stack, started)


def route_table(vm: str) -> str:
    return subprocess.run(["ip", "-n", vm, "route"], capture_output=True, text=True).stdout


def _retire(stack: Stack) -> None:
    stack.leave_switch(SWITCH)
    wait_for(lambda: all(vm["name"] != VM for vm in stack.status(detail=False)["vms"]), 60, 0.2)


def run(ctx: Context) -> list[Row]:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-join-", dir=ctx.run_dir))
    results: list[dict[str, Any]] = []
    ctx.raw["join"] = results
    ctx.say(f"join: bringing up examples/discovered; switch {SWITCH} joins {ctx.repeat} times")
    with Stack("discovered", run_dir) as stack:
        wait_for(stack.all_pairs_ok, 120, 0.5)
        for i in range(ctx.repeat):
            r = _join(stack)
            r["relearnt_s"] = _relearnt(stack)
            _retire(stack)
            results.append(r)
            ctx.say(f"join {i + 1}/{ctx.repeat}: admitted in {r['decided_s'] * 1000:.0f} ms, VM synced "
                    f"{r['synced_s']:.2f} s, first routed ping {r['routed_s']:.2f} s; its links cut and restored "
                    f"{r['relearnt_s']:.2f} s")
    note = (f"examples/discovered: switch {SWITCH} connects, the server makes VM {VM} from the template (FRR, "
            f"unnumbered OSPF p2p, 1 s hellos); pings {SOURCE} -> {TARGET} every 10 ms")
    return [
        Row("join", "switch joins: first routed ping after its connection", "s", Summary.of(r["routed_s"] for r in results),
            Summary.of(r["relearnt_s"] for r in results), "its links cut and restored (VM running)", "target <= 5 s",
            note),
        Row("join", "switch joins: admission decision", "s", Summary.of(r["decided_s"] for r in results)),
        Row("join", "switch joins: its VM made and its FIB reported", "s", Summary.of(r["synced_s"] for r in results)),
    ]
