"""Route churn in one VM loses nothing (issue 13 item 3; the full 10k/s x 60 s run is
``bench/run.py --only churn``).

On rftest2, rA's kernel FIB takes 2,000 changes/s for 10 s (:mod:`routeflow.lab.churn`:
a window of 1,000 real BGP-table prefixes sliding through 4,000, through rA's OSPF
neighbours). Meanwhile h2 pings its gateway rB (another VM's slow path). Afterwards the
final set of churned routes is exactly in rA's FIB and in the server's view, verify is
clean within a few seconds of the last change, and the RF-Server, RF-Controller and rA's
RF-Client grew by less than a generous cap. Withdrawing the whole set is followed too.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import pytest

from routeflow.client.netlink import proto_name
from routeflow.harness import Stack, ping, running
from routeflow.lab import churn
from routeflow.lab.churn import CHURN_PROTO, DEFAULT_TABLE, ChurnOptions

pytestmark = pytest.mark.integration

RATE, DURATION = 2_000.0, 10.0
#: Seconds from the last change until verify must be clean.
CLEAN_WITHIN = 10.0
#: RSS growth allowed per process over the run: far above what 1,000 routes need.
RSS_CAP_KB = 100 * 1024


@pytest.fixture(scope="module")
def rftest2(tmp_path_factory):
    if not DEFAULT_TABLE.exists():
        pytest.skip(f"no BGP table at {DEFAULT_TABLE}")
    with running("rftest2", tmp_path_factory.mktemp("churn"), Stack.all_pairs_ok) as stack:
        yield stack


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _churned_in_server(stack: Stack) -> set[str]:
    vm = next(v for v in stack.status()["vms"] if v["name"] == "rA")
    return {r["prefix"] for r in vm["routes"] if r["proto"] == proto_name(CHURN_PROTO)}


def test_churn_loses_no_route_keeps_the_slow_path_and_memory_bounded(rftest2: Stack):
    stack = rftest2
    assert stack.server is not None and stack.controller is not None
    pids = {"server": stack.server.pid, "controller": stack.controller.pid, "client rA": stack.client_pids("rA")[0]}
    ping("h2", "172.31.2.1", count=2, interval=0.05)  # ARP resolved: the pings below measure the churn alone
    before = {name: _rss_kb(pid) for name, pid in pids.items()}
    proc = churn.spawn("rA", ChurnOptions(RATE, DURATION, pool=4_000, window=1_000))
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # Another VM's slow path while rA churns: 30 pings over 6 s, each given 1 s.
            pinged = pool.submit(ping, "h2", "172.31.2.1", 30, 0.2, 1.0)
            done = churn.churned(proc)
            if done is None:
                churn.collect(proc, 30)  # raises with the generator's error
                pytest.fail("the churn generator ended without churning")
            stack.wait_verify_clean(timeout=max(0.5, CLEAN_WITHIN - (time.time() - done.ended_at)), interval=0.2)
            clean_after = time.time() - done.ended_at
            report = churn.collect(proc, 60)
            slow_path = pinged.result(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = {name: _rss_kb(pid) for name, pid in pids.items()}

    assert report.errors == {}
    assert report.changes == int(RATE * DURATION)
    assert report.achieved_rate >= 0.9 * RATE, report.per_second
    assert len(report.final_expected) == 1_000
    assert report.lost_in_kernel == []
    assert _churned_in_server(stack) == set(report.final_expected)
    assert clean_after < CLEAN_WITHIN
    assert slow_path.ok, f"h2 -> rB during the churn: {slow_path.received}/{slow_path.sent} answered"
    grown = {name: after[name] - before[name] for name in pids}
    assert all(kb < RSS_CAP_KB for kb in grown.values()), grown

    # Withdrawing every churned route is followed as well.
    churn.flush_in("rA")
    stack.wait_verify_clean(timeout=CLEAN_WITHIN, interval=0.2)
    assert _churned_in_server(stack) == set()
