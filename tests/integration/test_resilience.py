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
import time

import pytest
from tests.scenarios import Kill, converged, kill_under_ping, stayed_up

from routeflow.harness import CONVERGE_TIMEOUT, Stack, running, wait_for

pytestmark = pytest.mark.integration

#: The systemd units' RestartSec: how long a killed controller stays down.
RESTART_SEC = 1.0


@pytest.fixture(scope="module")
def rftest2(tmp_path_factory):
    with running("rftest2", tmp_path_factory.mktemp("resilience"), Stack.all_pairs_ok) as stack:
        yield stack


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

    _check(kill_under_ping(rftest2, "RF-Controller", kill, back))
    assert stayed_up(adjacencies, sampled) == []


def test_client_killed_is_restarted_by_the_server(rftest2):
    """rA's RF-Client: on the stream's path."""
    adjacencies = converged(rftest2)
    sampled = time.monotonic()
    (pid,) = rftest2.client_pids("rA")

    def connected() -> bool:
        vm = next(v for v in rftest2.status(detail=False)["vms"] if v["name"] == "rA")
        return rftest2.client_pids("rA") not in ([], [pid]) and bool(vm["client_connected"])

    _check(kill_under_ping(rftest2, "RF-Client rA", lambda: os.kill(pid, signal.SIGKILL), connected))
    assert stayed_up(adjacencies, sampled) == []


@pytest.mark.parametrize("daemon", ["ospfd", "ospf6d", "zebra"])
def test_routing_daemon_off_the_path_killed_is_restarted_by_the_server(rftest2, daemon):
    """rB's daemon: its death is a routing event for rB and its neighbours (README,
    "Restarts"), not for the path h1 -> h4 (sA, sD), which loses nothing."""
    converged(rftest2)
    old = rftest2.daemon_pid("rB", daemon)
    result = kill_under_ping(rftest2, f"{daemon} of rB", lambda: rftest2.kill_daemon("rB", daemon),
                              lambda: rftest2.daemon_pid("rB", daemon) not in (None, old))
    assert result.lost == 0, result
    # rB's routes come back once its adjacencies do: then nothing is stale, nothing missing.
    wait_for(rftest2.all_pairs_ok, CONVERGE_TIMEOUT, 0.5)
    rftest2.wait_verify_clean()
