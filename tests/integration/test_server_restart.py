"""The RF-Server restarted on the real stack (rftest2) loses nothing.

Killed with ``kill -9`` (or told to leave with SIGUSR1) under a ping stream from
h1 to h4 and started again two seconds later, the server adopts the VMs its
predecessor left: the same namespaces, routing daemons and RF-Clients, which
reconnect by themselves. No OSPF adjacency drops, no packet is lost, the
switches the VMs mirror get no flow change, and verify is clean within 2 s of
the server's return. A VM whose config changed meanwhile is recreated, and it
alone. The operator's stop (SIGTERM, at the end) still removes every VM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest
import yaml
from tests.scenarios import H4, PINGS, VMS, converged, flow_mods, stayed_up, vm_identity

from routeflow.harness import CONVERGE_TIMEOUT, Stack, example_variant, running, wait_for

pytestmark = pytest.mark.integration

#: How long the server stays down.
DOWN = 2.0


@pytest.fixture(scope="module")
def rftest2(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("server-restart")
    # A copy: a test edits a VM's config between two runs of the server.
    example = example_variant("rftest2", run_dir / "example")
    with running(example, run_dir, Stack.all_pairs_ok) as stack:
        yield stack
    # The harness stopped the server with SIGTERM: every VM and the RFVS are gone.
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert not set(VMS) & set(namespaces), namespaces
    assert "rfvs" not in subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split()


@dataclass
class Restart:
    """A server restart under a ping stream h1 -> h4: pings sent and lost, seconds from the
    server's return (listening again) to a clean verify, and the flow mods the new server sent."""

    sent: int
    lost: int
    clean_after_s: float
    flow_mods: dict[str, int]


def _stop(stack: Stack, sig: int) -> None:
    assert stack.server is not None
    stack.server.send_signal(sig)
    returncode = stack.server.wait(30)
    if sig == signal.SIGUSR1:
        assert returncode == 0, f"the server left with {returncode}"


def _restart_under_ping(stack: Stack, sig: int) -> Restart:
    """Stop the server with ``sig`` while h1 pings h4 every 10 ms (for ``PINGS`` of them,
    well past the clean verify), start it again ``DOWN`` s later, and measure until
    verify is clean."""
    # A count, not an interrupt, ends the stream: ping then waits for the last reply
    # instead of counting the one in flight as lost.
    pinger = subprocess.Popen(["ip", "netns", "exec", "h1", "ping", "-n", "-c", str(PINGS), "-i", "0.01", "-W", "1",
                               H4], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        _stop(stack, sig)
        time.sleep(DOWN)
        stack.start_server()
        returned = time.monotonic()
        stack.wait_verify_clean(timeout=15, interval=0.05)
        clean_after = time.monotonic() - returned
        summary = pinger.communicate(timeout=PINGS * 0.01 + 30)[0]
    finally:
        pinger.kill()
        pinger.wait()
    counts = re.search(r"(\d+) packets transmitted, (\d+) received", summary)
    assert counts, f"ping ended without its summary: {summary[-500:]!r}"
    sent, received = int(counts[1]), int(counts[2])
    return Restart(sent, sent - received, round(clean_after, 2), flow_mods(stack))


def _server_log(stack: Stack) -> str:
    return (stack.run_dir / "server.log").read_text(errors="replace")


def _check_adopted(stack: Stack, before: dict[str, dict[str, object]], restart: Restart) -> None:
    assert {vm: vm_identity(stack, vm) for vm in VMS} == before, "a VM was recreated"
    assert restart.lost == 0, restart
    assert restart.clean_after_s <= 2.0, restart
    # Every switch kept its flows untouched, the RFVS's trunks too: the server sent them nothing.
    dpids = {f"{vm.dpid:#x}" for vm in stack.config.vms} | {f"{stack.config.rfvs.dpid:#x}"}
    assert restart.flow_mods == dict.fromkeys(dpids, 0)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGUSR1], ids=["kill-9", "sigusr1"])
def test_restarted_server_adopts_the_vms_and_loses_nothing(rftest2, how):
    adjacencies = converged(rftest2)
    sampled = time.monotonic()
    sent_before = flow_mods(rftest2)
    before = {vm: vm_identity(rftest2, vm) for vm in VMS}
    assert all(identity["client"] for identity in before.values())
    log_start = len(_server_log(rftest2))
    restart = _restart_under_ping(rftest2, how)
    print(f"server restart ({how.name}, down {DOWN:g} s): {restart}; "
          f"flow mods the previous server had sent: {sent_before}")
    _check_adopted(rftest2, before, restart)
    assert stayed_up(adjacencies, sampled) == []
    log = _server_log(rftest2)[log_start:]
    for vm in VMS:
        assert re.search(rf"VM {vm}: adopted \(namespace {vm}, zebra \d+, ospfd \d+, ospf6d \d+; RF-Client \d+\)",
                         log), log
    assert "virtual environment up: 4 VMs on rfvs (4 adopted)" in log

    # The new server supervises the clients it adopted: one that dies is started again.
    (pid,) = rftest2.client_pids("rB")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: rftest2.client_pids("rB") not in ([], [pid]), 30, 0.1)
    rftest2.wait_verify_clean()


def test_a_vm_whose_config_changed_is_recreated_alone(rftest2):
    adjacencies = converged(rftest2)
    sampled = time.monotonic()
    before = {vm: vm_identity(rftest2, vm) for vm in VMS}
    _stop(rftest2, signal.SIGKILL)
    document = yaml.safe_load(rftest2.config_path.read_text())
    rd = next(vm for vm in document["vms"] if vm["name"] == "rD")
    rd["engine_config"] += "! changed while the server was down\n"
    rftest2.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    log_start = len(_server_log(rftest2))
    rftest2.start_server()
    wait_for(lambda: "virtual environment up" in _server_log(rftest2)[log_start:], 60, 0.2)
    after = {vm: vm_identity(rftest2, vm) for vm in VMS}
    assert {vm: after[vm] for vm in ("rA", "rB", "rC")} == {vm: before[vm] for vm in ("rA", "rB", "rC")}
    assert after["rD"]["netns"] != before["rD"]["netns"]
    assert not set(after["rD"]["daemons"].values()) & set(before["rD"]["daemons"].values())
    log = _server_log(rftest2)[log_start:]
    assert "VM rD: recreated (planned differently: engine_run)" in log, log
    assert "virtual environment up: 4 VMs on rfvs (3 adopted)" in log
    # The other routers' adjacencies among themselves never went down.
    rd_id = "10.255.0.4"
    assert stayed_up({key: up for key, up in adjacencies.items() if "rD" not in key and rd_id not in key},
                      sampled) == []
    wait_for(rftest2.all_pairs_ok, CONVERGE_TIMEOUT, 0.5)
    rftest2.wait_verify_clean()
