#!/usr/bin/env python3
"""RF-Server core micro-benchmark: N routes arriving as client deltas, in process.

    .venv/bin/python bench/core.py                   # 100k routes
    .venv/bin/python bench/core.py --routes 1000000

Feeds a :class:`~routeflow.server.core.ServerCore` (one VM, one datapath that
has joined and been dumped) N routes as ``FibDelta`` messages of 2000, each
encoded and decoded by the RF-protocol codec as on the wire, and reconciles
after each, as the server does: the incremental path. The baseline, measured
in the same run on the same routes, is one full translation of the final FIB
by the pure reference compiler (``compile_datapath``), i.e. what the server
would pay per batch without the incremental compiler. CPU time, best of
``--repeat``; peak RSS of the whole process at the end.
"""

from __future__ import annotations

import argparse
import resource
import time

from routeflow.config.loader import parse_config
from routeflow.flows.compiler import compile_datapath
from routeflow.model import Fib, Interface, Neighbour, NextHop, PortDesc, Route
from routeflow.protocol import codec
from routeflow.protocol.messages import DatapathJoin, DumpTable, FibDelta, FibSnapshot, TableDump, TableMod
from routeflow.server.core import ServerCore

CONFIG = parse_config({"vms": [{"name": "rA", "dpid": 1, "engine": "none", "interfaces": [
    {"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]},
    {"name": "eth2", "port": 2, "addresses": ["172.31.2.1/24"]}]}]})
PORTS = (PortDesc(1, "p1", "aa:00:00:00:00:01", True), PortDesc(2, "p2", "aa:00:00:00:00:02", True))
INTERFACES = (Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",)),
              Interface("eth2", "02:00:00:00:00:02", True, ("172.31.2.1/24",)))
NEIGHBOURS = (Neighbour("eth1", "172.31.1.2", "0a:00:00:00:00:01"), Neighbour("eth2", "172.31.2.2", "0a:00:00:00:00:02"))
BATCH = 2000


def routes(n: int) -> list[Route]:
    hops = [(NextHop("eth1", "172.31.1.2"),), (NextHop("eth2", "172.31.2.2"),),
            (NextHop("eth1", "172.31.1.2"), NextHop("eth2", "172.31.2.2"))]
    return [Route(f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24", hops[i % 3], proto="bgp") for i in range(n)]


def incremental(batch: list[Route]) -> tuple[float, int]:
    core = ServerCore(CONFIG)
    core.on_controller_up()
    (dump,) = [o.msg for o in core.on_datapath_join(DatapathJoin(1, PORTS)) if isinstance(o.msg, DumpTable)]
    core.on_table_dump(TableDump(dump.request_id, 1, (), ()))
    core.on_fib_snapshot("rA", FibSnapshot(Fib(INTERFACES, (), NEIGHBOURS)))
    core.reconcile()
    flows = 0
    start = time.process_time()
    for i in range(0, len(batch), BATCH):
        wire = codec.encode(FibDelta(routes_set=tuple(batch[i : i + BATCH])))
        (delta,) = codec.Connection().receive_data(wire)
        core.on_fib_delta("rA", delta)  # type: ignore[arg-type]
        for out in core.reconcile():
            assert isinstance(out.msg, TableMod)
            flows += len(out.msg.add)
            codec.encode(out.msg)
    return time.process_time() - start, flows


def full(batch: list[Route]) -> float:
    vm = CONFIG.vms[0]
    start = time.process_time()
    compile_datapath(vm, Fib(INTERFACES, tuple(batch), NEIGHBOURS), {p.port_no: p for p in PORTS})
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    batch = routes(args.routes)
    inc = min(incremental(batch) for _ in range(args.repeat))
    base = min(full(batch) for _ in range(args.repeat))
    batches = -(-args.routes // BATCH)
    rows = [
        ("operation", "routes", "CPU s", "routes/s", "ratio to one full compile"),
        ("incremental: deltas of 2000, codec both ways", f"{args.routes:,}", f"{inc[0]:.2f}",
         f"{args.routes / inc[0]:,.0f}", f"{inc[0] / base:.2f}x"),
        ("baseline: one full compile of the final FIB", f"{args.routes:,}", f"{base:.2f}",
         f"{args.routes / base:,.0f}", "1.00x"),
        ("without incremental: a full compile per batch (estimate)", f"{args.routes:,}",
         f"{base * batches / 2:.1f}", f"{args.routes / (base * batches / 2):,.0f}", f"{batches / 2 / (inc[0] / base):.0f}x slower"),
    ]
    assert inc[1] == args.routes, inc
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
