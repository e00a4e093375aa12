"""Failure recovery on rftest2: a 1 ms ICMP echo stream h1 -> h2 (path A-B) while link A-B is
cut and restored; milliseconds of loss = lost probes x the 1 ms send interval.

The stream comes from :mod:`.prober`, which sends every 1 ms whatever comes back
(``ping -i 0.001`` paces itself on outstanding replies and sends almost nothing during an
outage, so its lost sequence numbers understate the loss).

routeflow: the link is cut by taking both veth ends down (``lab.network.set_link``): the
switches report port-down, routeflow takes the mirrored VM NICs down, FRR reroutes over
A-D-B at once.

Baseline, measured in the same run: the same link made silent (``set_link(..., "silent")``:
OpenFlow port config ``no-receive,no-forward`` on both ends of A-B, every packet dropped,
carrier and port state up; ``tc netem`` is not available in this kernel), so only OSPF's
dead interval (3 s in rftest2) detects it: what the network loses without port-status
propagation.

Virtual plane: rftest2 again with every VM's routing plane virtual and link discovery every
0.25 s, the same cut (the port-down takes the RFVS wire down with the NICs at once) and the
same silent cut. The routers' hellos cross the RFVS, not A-B, so
OSPF can notice only once discovery has unwired A-B's NICs and the hellos take the dead link:
the price of the virtual plane in a failure no port reports, against the physical plane's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from routeflow.harness import Stack, example_variant, route_device, wait_for
from routeflow.lab import network
from routeflow_bench.common import Context
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary, probe_losses

SRC, DST, LINK = "h1", "172.31.2.100", "A-B"
INTERVAL = 0.001
PROBER = str(Path(__file__).with_name("prober.py"))
#: Link-discovery interval of the virtual-plane run (rftest2's OSPF: 1 s hello, 3 s dead).
PROBE_INTERVAL = 0.25


def _ready(stack: Stack) -> bool:
    """Converged with h1 -> h2 on A-B: rA's route to h2 leaves by eth3 and rB's back by eth2,
    every pair pings (so the detours exist) and verify is clean."""
    return (route_device("rA", DST) == "eth3" and route_device("rB", "172.31.1.100") == "eth2"
            and stack.all_pairs_ok() and stack.verify().ok)


def _cycle(stack: Stack, cut: Callable[[], None], restore: Callable[[], None], settle: float,
           lead: float = 1.5) -> dict[str, Any]:
    """One cut/restore under a 1 ms ping stream; losses per phase."""
    duration = lead + 2 * settle
    proc = subprocess.Popen(["ip", "netns", "exec", SRC, sys.executable, PROBER, DST, str(INTERVAL), str(duration)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(lead)
    t_cut = time.time()
    cut()
    time.sleep(settle)
    t_restore = time.time()
    restore()
    out, err = proc.communicate(timeout=duration + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"prober exited {proc.returncode}: {err.strip()[-300:]}")
    data = json.loads(out)
    result = probe_losses(data["sent"], data["reply"], [t_cut, t_restore])
    phases = result["phases"]
    return {"sent": result["sent"], "received": result["received"], "interval_ms": result["interval_ms"],
            "before": phases.get(-1), "cut": phases.get(0), "restore": phases.get(1)}


def _cycles(ctx: Context, stack: Stack, kinds: dict[str, str], cycles: dict[str, list[dict[str, Any]]],
            settle: float, ready: Callable[[], bool]) -> None:
    """``ctx.repeat`` rounds of one cut/restore cycle per kind (kind -> the link state that
    cuts), each started once ``ready``."""
    for i in range(ctx.repeat):
        for kind, cut_state in kinds.items():
            wait_for(ready, 60, 0.2)

            def cut(state: str = cut_state) -> None:
                network.set_link(LINK, state, state_path=stack.lab_state)

            def restore() -> None:
                network.set_link(LINK, "up", state_path=stack.lab_state)
            c = _cycle(stack, cut, restore, settle)
            cycles.setdefault(kind, []).append(c)
            ctx.say(f"recovery: {kind} cycle {i + 1}/{ctx.repeat}: cut {c['cut']['loss_ms']:.0f} ms "
                    f"({c['cut']['lost']} lost), restore {c['restore']['loss_ms']:.0f} ms; "
                    f"interval {c['interval_ms']:.2f} ms")


def _wired(stack: Stack) -> bool:
    """Every switch-to-switch link of rftest2 (five) is wired VM to VM on the RFVS."""
    return sum(bool(i["virtual_link"]) for vm in stack.status(detail=False)["vms"] for i in vm["interfaces"]) == 10


def run(ctx: Context) -> list[Row]:
    settle = 5.0 if ctx.quick else 6.0
    run_dir = Path(tempfile.mkdtemp(prefix="bench-recovery-", dir=ctx.run_dir))
    cycles: dict[str, list[dict[str, Any]]] = {}
    ctx.raw["recovery"] = cycles
    ctx.say(f"recovery: bringing up rftest2; {ctx.repeat} cut/restore cycles each, {settle:.0f} s apart")
    # The stack's teardown removes the switches, so a failed cycle leaves no port config behind.
    with Stack("rftest2", run_dir / "physical") as stack:
        _cycles(ctx, stack, {"routeflow": "down", "baseline": "silent"}, cycles, settle, lambda: _ready(stack))
    ctx.say(f"recovery: bringing up rftest2 in the virtual routing plane, discovery every {PROBE_INTERVAL} s")
    example = example_variant("rftest2", run_dir / "virtual-example", {"routing_plane": "virtual"},
                              config_settings={"discovery": {"interval": PROBE_INTERVAL}})
    with Stack(example, run_dir / "virtual") as stack:
        _cycles(ctx, stack, {"virtual-cut": "down", "virtual-silent": "silent"}, cycles, settle + 2,
                lambda: _ready(stack) and _wired(stack))
    label = "same cut, carrier up: OSPF dead timer"
    rf, base = cycles["routeflow"], cycles["baseline"]
    virtual_cut, virtual = cycles["virtual-cut"], cycles["virtual-silent"]
    note = ("1 ms ICMP probes h1->h2 (bench/routeflow_bench/prober.py); loss = lost probes x send interval "
            f"(median {Summary.of(c['interval_ms'] for c in rf + base).median:.3f} ms); longest outage at the cut: "
            f"{Summary.of(c['cut']['outage_ms'] for c in rf).median:.0f} ms routeflow, "
            f"{Summary.of(c['cut']['outage_ms'] for c in base).median:.0f} ms baseline; OSPF dead-interval 3 s; "
            "baseline cut = the lab's silent link: OpenFlow port config no-receive,no-forward on both ends "
            "(carrier and port state stay up)")
    virtual_note = (f"rftest2 with every VM's routing plane virtual, discovery every {PROBE_INTERVAL} s: the "
                    f"routers' hellos cross the RFVS, so OSPF notices only after discovery unwires A-B "
                    f"(3.5 intervals) and its dead interval passes; baseline = the physical plane's silent cut")
    return [
        Row("recovery", "loss after link A-B cut", "ms", Summary.of(c["cut"]["loss_ms"] for c in rf),
            Summary.of(c["cut"]["loss_ms"] for c in base), label, "target < 100 ms", note=note),
        Row("recovery", "loss after link A-B returns", "ms", Summary.of(c["restore"]["loss_ms"] for c in rf),
            Summary.of(c["restore"]["loss_ms"] for c in base), label),
        Row("recovery", "loss after link A-B cut, virtual plane", "ms",
            Summary.of(c["cut"]["loss_ms"] for c in virtual_cut), Summary.of(c["cut"]["loss_ms"] for c in rf),
            "same cut, physical plane", "target < 100 ms"),
        Row("recovery", "loss after link A-B goes silent, virtual plane", "ms",
            Summary.of(c["cut"]["loss_ms"] for c in virtual), Summary.of(c["cut"]["loss_ms"] for c in base),
            "same silent cut, physical plane", note=virtual_note),
        Row("recovery", "loss after silent link A-B returns, virtual plane", "ms",
            Summary.of(c["restore"]["loss_ms"] for c in virtual), Summary.of(c["restore"]["loss_ms"] for c in base),
            "same silent cut, physical plane"),
    ]
