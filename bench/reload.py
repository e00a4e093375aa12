#!/usr/bin/env python3
"""What a configuration reload costs: FlowMods sent and CPU time, when it changes one VM of
several, against the full table a cold start (or a flush) would send again.

    .venv/bin/python bench/reload.py                        # 4 VMs, 100k routes each
    .venv/bin/python bench/reload.py --vms 8 --routes 200000 --repeat 5

A :class:`~routeflow.server.core.ServerCore` runs ``--vms`` VMs, one per datapath, each with
``--routes`` routes (``10.X.Y.0/24`` over two next hops and their ECMP pair) installed. Each
scenario reloads a config that changes VM 0 only, the way ``routeflow reload`` does, then
lets VM 0's client report what the change did to its kernel (a NIC and an address more, one
less), and counts the FlowMods (flows and groups added, changed or deleted) the core sends.
The baseline is the cold start in the same run: every datapath's whole table computed and
sent. CPU time, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from routeflow.config.loader import parse_config
from routeflow.config.schema import Config
from routeflow.model import Fib, Interface, Neighbour, NextHop, PortDesc, Route
from routeflow.protocol.messages import DatapathJoin, DumpTable, FibSnapshot, TableDump, TableMod
from routeflow.server.core import ServerCore
from routeflow.server.core_vms import Out

PORTS = tuple(PortDesc(p, f"p{p}", f"aa:00:00:00:00:{p:02x}", True) for p in (1, 2, 3))


def vm(k: int, nics: int = 2, engine_config: str = "") -> dict[str, object]:
    return {"name": f"r{k}", "dpid": k + 1, "engine": "none", "engine_config": engine_config, "interfaces": [
        {"name": f"eth{p}", "port": p, "addresses": [f"172.31.{p}.1/24"]} for p in range(1, nics + 1)]}


def config(vms: int, first: dict[str, object] | None = None) -> Config:
    return parse_config({"vms": [first or vm(0), *(vm(k) for k in range(1, vms))]})


def fib(k: int, n: int, nics: int = 2) -> Fib:
    """VM ``k``'s FIB with ``nics`` NICs: ``n`` routes over eth1, eth2 and both (eth1 only, with one NIC)."""
    hops = [(NextHop("eth1", "172.31.1.2"),), (NextHop("eth2", "172.31.2.2"),),
            (NextHop("eth1", "172.31.1.2"), NextHop("eth2", "172.31.2.2"))] if nics > 1 else [
            (NextHop("eth1", "172.31.1.2"),)]
    return Fib(tuple(Interface(f"eth{p}", f"02:00:00:00:{k:02x}:{p:02x}", True, (f"172.31.{p}.1/24",))
                     for p in range(1, nics + 1)),
               tuple(Route(f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24", hops[i % len(hops)], proto="bgp")
                     for i in range(n)),
               tuple(Neighbour(f"eth{p}", f"172.31.{p}.2", f"0a:00:00:00:{k:02x}:{p:02x}") for p in range(1, min(nics, 2) + 1)))


def flow_mods(out: list[Out]) -> int:
    return sum(len(m.add) + len(m.modify) + len(m.delete) + len(m.group_add) + len(m.group_modify)
               + len(m.group_delete) for m in (o.msg for o in out) if isinstance(m, TableMod))


def cold_start(cfg: Config, fibs: list[Fib]) -> tuple[ServerCore, int, float]:
    """Every datapath's table computed and sent: the core, the FlowMods and the CPU seconds."""
    start = time.process_time()
    core = ServerCore(cfg)
    core.on_controller_up()
    for v in cfg.vms:
        (dump,) = [o.msg for o in core.on_datapath_join(DatapathJoin(v.dpid, PORTS)) if isinstance(o.msg, DumpTable)]
        core.on_table_dump(TableDump(dump.request_id, v.dpid, (), ()))
        core.on_fib_snapshot(v.name, FibSnapshot(fibs[int(v.name[1:])]))
    sent = flow_mods(core.reconcile())
    return core, sent, time.process_time() - start


#: Each scenario: the config VM 0 gets, and VM 0's FIB once its kernel has taken it (None: unchanged).
Scenario = tuple[str, Callable[[int], Config], Callable[[int], Fib | None]]


def scenarios(vms: int) -> list[Scenario]:
    return [
        ("engine config of one VM (an OSPF cost)", lambda n: config(vms, vm(0, engine_config="! cost 100\n")),
         lambda n: None),
        ("a NIC and its address added to one VM", lambda n: config(vms, vm(0, nics=3)), lambda n: fib(0, n, 3)),
        ("a NIC removed from one VM (its routes move to the other)", lambda n: config(vms, vm(0, nics=1)),
         lambda n: fib(0, n, 1)),
        ("one VM removed", lambda n: parse_config({"vms": [vm(k) for k in range(1, vms)]}), lambda n: None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=4)
    parser.add_argument("--routes", type=int, default=100_000, help="routes per VM")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fibs = [fib(k, args.routes) for k in range(args.vms)]
    cfg = config(args.vms)
    best: dict[str, tuple[int, float]] = {}
    for _ in range(args.repeat):  # interleaved, so that the machine's noise falls on all alike
        core, full, seconds = cold_start(cfg, fibs)
        best["cold"] = (full, min(best.get("cold", (0, seconds))[1], seconds))
        for name, new, reported in scenarios(args.vms):
            core, _, _ = cold_start(cfg, fibs)
            start = time.process_time()
            _, out = core.reload(new(args.routes))
            sent = flow_mods(core.reconcile())
            after = reported(args.routes)
            if after is not None:
                core.on_fib_snapshot("r0", FibSnapshot(after))
                sent += flow_mods(core.reconcile())
            seconds = time.process_time() - start
            best[name] = (sent, min(best.get(name, (0, seconds))[1], seconds))
    full, base = best.pop("cold")
    rows = [("reload", "FlowMods", "of the full table", "CPU s", "CPU ratio to the cold start")]
    rows.append((f"cold start (baseline): {args.vms} VMs x {args.routes:,} routes", f"{full:,}", "1.0000",
                 f"{base:.2f}", "1.00x"))
    for name, (sent, seconds) in best.items():
        rows.append((name, f"{sent:,}", f"{sent / full:.4f}", f"{seconds:.3f}", f"{seconds / base:.3f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
