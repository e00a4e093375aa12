"""Any one process of rftest2 killed with ``kill -9`` loses nothing on paths it does not carry.

Under a ping stream h1 -> h4 every 10 ms (sA and sD: rA's and rD's flows), one process
is killed and comes back: the RF-Controller (started again after a second, as its
systemd unit does), an RF-Client and the routing daemons (started again by the
RF-Server's supervisors). Each must lose no ping, rewrite no flow that was right, and
leave verify clean within 2 s of its return. (The RF-Server's own restart is
``test_server_restart.py``; a daemon on the stream's path, ``test_rftest2.py`` and
``test_bird.py``.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

import pytest
from tests.scenarios import converged, flow_mods, stayed_up, stream_loss

from routeflow.harness import CONVERGE_TIMEOUT, Stack, running, wait_for

pytestmark = pytest.mark.integration

#: h4: h1's traffic to it crosses sA and sD (link A-D), flows of rA's and rD's.
H4 = "172.31.4.100"
#: The systemd units' RestartSec: how long a killed controller stays down.
RESTART_SEC = 1.0


@pytest.fixture(scope="module")
def rftest2(tmp_path_factory):
    with running("rftest2", tmp_path_factory.mktemp("resilience"), Stack.all_pairs_ok) as stack:
        yield stack


@dataclass
class Kill:
    """One process killed under the ping stream: pings lost, seconds from its return to a
    clean verify, and the flow changes the server sent meanwhile, by datapath."""

    what: str
    sent: int
    lost: int
    clean_after_s: float
    rewritten: dict[str, int]


def _kill_under_ping(stack: Stack, what: str, kill: Callable[[], None], back: Callable[[], bool]) -> Kill:
    """Run ``kill`` while h1 pings h4 every 10 ms, wait for ``back`` (the process runs
    again), then until verify is clean; the stream goes on 2 s more."""
    before = flow_mods(stack)
    pinger = subprocess.Popen(["ip", "netns", "exec", "h1", "ping", "-n", "-i", "0.01", "-W", "1", H4],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        kill()
        wait_for(back, 30, 0.02)
        returned = time.monotonic()
        stack.wait_verify_clean(timeout=15, interval=0.05)
        clean_after = time.monotonic() - returned
        time.sleep(2.0)
    finally:
        pinger.send_signal(signal.SIGINT)
        summary = pinger.communicate(timeout=10)[0]
    sent, lost = stream_loss(summary)
    after = flow_mods(stack)
    rewritten = {dpid: n - before.get(dpid, 0) for dpid, n in after.items() if n != before.get(dpid, 0)}
    result = Kill(what, sent, lost, round(clean_after, 2), rewritten)
    print(f"kill -9 {what}: {result}")
    return result


def _check(kill: Kill) -> None:
    assert kill.lost == 0, kill
    assert kill.clean_after_s <= 2.0, kill
    assert kill.rewritten == {}, kill


def test_controller_killed_and_restarted(rftest2):
    adjacencies = converged(rftest2)
    sampled = time.monotonic()

    def kill() -> None:
        rftest2.stop_controller(signal.SIGKILL)
        time.sleep(RESTART_SEC)
        rftest2.start_controller()

    def back() -> bool:
        return bool(rftest2.status(detail=False)["controller_connected"])

    _check(_kill_under_ping(rftest2, "RF-Controller", kill, back))
    assert stayed_up(adjacencies, sampled) == []


def test_client_killed_is_restarted_by_the_server(rftest2):
    """rA's RF-Client: on the stream's path."""
    adjacencies = converged(rftest2)
    sampled = time.monotonic()
    (pid,) = rftest2.client_pids("rA")

    def connected() -> bool:
        vm = next(v for v in rftest2.status(detail=False)["vms"] if v["name"] == "rA")
        return rftest2.client_pids("rA") not in ([], [pid]) and bool(vm["client_connected"])

    _check(_kill_under_ping(rftest2, "RF-Client rA", lambda: os.kill(pid, signal.SIGKILL), connected))
    assert stayed_up(adjacencies, sampled) == []


@pytest.mark.parametrize("daemon", ["ospfd", "ospf6d", "zebra"])
def test_routing_daemon_off_the_path_killed_is_restarted_by_the_server(rftest2, daemon):
    """rB's daemon: its death is a routing event for rB and its neighbours (README,
    "Restarts"), not for the path h1 -> h4 (sA, sD), which loses nothing."""
    converged(rftest2)
    old = rftest2.daemon_pid("rB", daemon)
    result = _kill_under_ping(rftest2, f"{daemon} of rB", lambda: rftest2.kill_daemon("rB", daemon),
                              lambda: rftest2.daemon_pid("rB", daemon) not in (None, old))
    assert result.lost == 0, result
    # rB's routes come back once its adjacencies do: then nothing is stale, nothing missing.
    wait_for(rftest2.all_pairs_ok, CONVERGE_TIMEOUT, 0.5)
    rftest2.wait_verify_clean()
