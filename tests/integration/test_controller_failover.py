"""Two RF-Controllers on rftest2: either can die (``kill -9``) and the other takes over.

Every switch (and the RFVS) has both controllers as targets. The RF-Server elects the
first active, which asks every switch to make it master; the second stands by as slave.
Under a ping stream h1 -> h4 every 10 ms, the active controller is killed: the server
elects the other in a newer term, which asks every switch for mastership with that term
as its generation id, reports the datapaths, and the server reads each switch's table and
sends only the difference, which is nothing. No ping is lost, no flow rewritten, verify
is clean at once. Then the first comes back (standing by) and the second is killed: the
first takes over again.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from tests.scenarios import Kill, converged, flow_mods, kill_under_ping, stayed_up

from routeflow.harness import STANDBY_OF_PORT, Stack, example_variant, running, wait_for

pytestmark = pytest.mark.integration

#: The controllers' OpenFlow ports: the first (the stack's own) and the standby.
A, B = 6653, STANDBY_OF_PORT


#: Both controllers' targets, as an operator configures a pair: every lab switch and the RFVS
#: are given both from the start.
PAIR = [f"tcp:127.0.0.1:{A}", f"tcp:127.0.0.1:{B}"]


@pytest.fixture(scope="module")
def rftest2(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("failover")
    example = example_variant("rftest2", run_dir / "example", switch_settings={"controller": PAIR},
                              config_settings={"rfvs": {"bridge": "rfvs", "dpid": 0x7266, "controller": PAIR}})
    with running(example, run_dir, Stack.all_pairs_ok) as stack:
        stack.start_standby_controller()  # the switches already have its target: only the process
        wait_for(lambda: stack.controller_ports() == (A, {B}), 30, 0.1)
        yield stack


def _failover(stack: Stack, kill: Any, survivor: int) -> tuple[Kill, float]:
    """Kill the active controller under the ping stream; the result and the seconds from the
    kill until the survivor was master of every datapath."""
    killed_at: list[float] = []

    def do_kill() -> None:
        killed_at.append(time.monotonic())
        kill(signal.SIGKILL)

    def took_over() -> bool:
        return stack.controller_ports() == (survivor, set())

    result = kill_under_ping(stack, f"active RF-Controller, {survivor} takes over", do_kill, took_over)
    # kill_under_ping measures from the takeover; the takeover itself, from the kill:
    failover = result.returned_at - killed_at[0]
    print(f"controller failover to {survivor}: {failover:.3f} s")
    return result, failover


def test_the_standby_takes_over_when_the_active_controller_is_killed_and_either_can_die(rftest2):
    adjacencies = converged(rftest2)
    sampled = time.monotonic()
    result, failover = _failover(rftest2, rftest2.stop_controller, B)
    assert result.lost == 0, result
    assert result.rewritten == {}, result  # nothing was wrong: nothing is written
    assert result.clean_after_s <= 2.0, result
    assert failover <= 2.0, failover
    # The first comes back, standing by; now it is the second that dies.
    rftest2.start_controller()
    wait_for(lambda: rftest2.controller_ports() == (B, {A}), 30, 0.1)
    result, failover = _failover(rftest2, rftest2.stop_standby_controller, A)
    assert result.lost == 0 and result.rewritten == {} and result.clean_after_s <= 2.0, result
    assert failover <= 2.0, failover
    assert stayed_up(adjacencies, sampled) == []


def test_a_restarted_server_elects_one_of_the_pair_in_a_newer_term(rftest2):
    """The server's terms come from its clock: a new server's first election is newer than
    its predecessor's last, so the switches take its master's requests (a term that started
    again from 1 would be refused as stale). Its counters start at 0: it sends nothing."""
    if rftest2.standby is None:  # killed by the test before
        rftest2.start_standby_controller()
    wait_for(lambda: rftest2.controller_ports() == (A, {B}), 30, 0.1)
    converged(rftest2)
    (old_term,) = {c["term"] for c in rftest2.status(detail=False)["controllers"]}
    assert rftest2.server is not None
    rftest2.server.kill()  # as a crash does: the VMs stay, for the next server to adopt
    rftest2.server.wait(30)
    rftest2.start_server()
    wait_for(lambda: rftest2.controller_ports() is not None and len(rftest2.controller_ports()[1]) == 1, 30, 0.1)
    (new_term,) = {c["term"] for c in rftest2.status(detail=False)["controllers"]}
    assert new_term > old_term
    rftest2.wait_verify_clean(timeout=15, interval=0.1)
    assert set(flow_mods(rftest2).values()) == {0}
