"""Failover of a server pair on rftest2: ``kill -9`` of the active RF-Server under a 1 ms
ICMP probe stream h1 -> h4, the standby taking over.

Two servers on one config share a one-member etcd on loopback (lease TTL 1 s). Per
kill: seconds from the kill to the standby serving (accepting connections on its
socket), milliseconds of probe loss, seconds from the kill to a clean ``routeflow
verify``, and the flow changes the new active server sent. The killed server is then
started again as the standby, so the next kill hits the other one.

The floor the failover time is set against: the lease TTL (the active server's death
is known only when its lease expires) plus etcd's expiry check, every 0.5 s.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from routeflow.harness import PAIR_SECOND, PAIR_SECOND_ARGS, Stack, pair_stack, serving, wait_for
from routeflow.protocol.transport import DEFAULT_UNIX
from routeflow.server.etcd_local import LocalEtcd
from routeflow_bench.common import Context
from routeflow_bench.report import Row
from routeflow_bench.resilience import kill_under_probes
from routeflow_bench.stats import Summary

#: etcd's client ports for this benchmark (loopback), apart from the tests'.
ETCD_PORT = 24090
LEASE_TTL = 1
#: (log name, arguments) of each server of the pair: the first listens where the config says.
SERVERS = (("server", ("--id", "first")), ("server2", PAIR_SECOND_ARGS))
SOCKETS = (DEFAULT_UNIX, PAIR_SECOND)


def run(ctx: Context) -> list[Row]:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-failover-", dir=ctx.run_dir))
    results: list[dict[str, Any]] = []
    ctx.raw["failover"] = results
    ctx.say(f"failover: rftest2 with a server pair on etcd; {ctx.repeat} kill -9 of the active server "
            "under a 1 ms probe stream")
    with LocalEtcd(run_dir / "etcd", members=1, base_port=ETCD_PORT) as etcd:
        stack = pair_stack("rftest2", run_dir, etcd.endpoints, LEASE_TTL)
        standby: subprocess.Popen[bytes] | None = None
        with stack:
            try:
                wait_for(stack.all_pairs_ok, 120, 0.5)
                active = 0
                standby, mark = _standby(stack, 1)
                for i in range(ctx.repeat):
                    wait_for(lambda: "standby: server" in _log(stack.run_dir, SERVERS[1 - active][0])[mark:], 30, 0.1)
                    killed_at: list[float] = []
                    serving_at: list[float] = []

                    def kill() -> None:
                        assert stack.server is not None
                        stack.server.send_signal(signal.SIGKILL)
                        killed_at.append(time.monotonic())
                        stack.server.wait(10)

                    def back(sock: str = SOCKETS[1 - active]) -> bool:
                        if not serving_at and serving(sock):
                            serving_at.append(time.monotonic())
                        return bool(serving_at)

                    r = kill_under_probes(stack, kill, back, counters_reset=True)
                    r["failover_s"] = serving_at[0] - killed_at[0]
                    r["clean_after_kill_s"] = r["failover_s"] + r["clean_s"]
                    results.append(r)
                    ctx.say(f"failover {i + 1}/{ctx.repeat}: serving after {r['failover_s']:.2f} s, "
                            f"{r['loss_ms']:.0f} ms lost, verify clean {r['clean_after_kill_s']:.2f} s after the "
                            f"kill, {r['rewritten']} flow changes")
                    # The standby is the active one now; the killed one comes back as the standby.
                    stack.server, active = standby, 1 - active
                    standby, mark = _standby(stack, 1 - active)
            finally:
                if standby is not None and standby is not stack.server:
                    standby.send_signal(signal.SIGTERM)
                    standby.wait(30)
    for path in SOCKETS:  # the last killed server's, which nobody removed
        if not serving(path):
            Path(path).unlink(missing_ok=True)
    note = (f"rftest2, two RF-Servers on a one-member etcd (lease {LEASE_TTL} s), kill -9 of the active one; "
            "1 ms ICMP probes h1->h4 (sA, sD)")
    floor = Summary.of([float(LEASE_TTL)] * len(results))
    return [
        Row("failover", "server pair: standby serving after kill -9 of the active", "s",
            Summary.of(r["failover_s"] for r in results), floor, "the lease TTL", "target <= 3 s", note=note),
        Row("failover", "server pair: probe loss", "ms", Summary.of(r["loss_ms"] for r in results),
            published="target 0"),
        Row("failover", "server pair: verify clean after the kill", "s",
            Summary.of(r["clean_after_kill_s"] for r in results)),
        Row("failover", "server pair: flow changes sent by the new active server", "",
            Summary.of(float(r["rewritten"]) for r in results), published="target 0"),
    ]


def _standby(stack: Stack, which: int) -> tuple[subprocess.Popen[bytes], int]:
    """Start server ``which`` of the pair (as the standby): its process, and where its log
    was, to wait for it to say it stands by."""
    name, args = SERVERS[which]
    mark = len(_log(stack.run_dir, name))
    return stack.spawn_server(name, *args), mark


def _log(run_dir: Path, name: str) -> str:
    path = run_dir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""
