"""VMs for discovered switches on the real stack (``examples/discovered``): no VM is
configured; each switch that joins and the template admits gets a VM, unnumbered OSPF
towards its neighbours, and routes; one outside the admission policy is rejected; a
switch that leaves keeps its VM for the grace period, then loses it."""

from __future__ import annotations

import signal
import time

import pytest

from routeflow.harness import CONVERGE_TIMEOUT, Stack, ping, route_device, running, wait_for
from routeflow.lab import network
from routeflow.vnet import frr, links
from routeflow.vnet.frr import DEFAULT_RUN_ROOT
from routeflow.vnet.resources import read_pidfile

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def discovered(tmp_path_factory) -> Stack:
    with running("discovered", tmp_path_factory.mktemp("discovered"), lambda s: s.all_pairs_ok()) as stack:
        yield stack


def _vm_names(stack: Stack) -> list[str]:
    return sorted(vm["name"] for vm in stack.status(detail=False)["vms"])


def _nics(stack: Stack, vm: str) -> list[str]:
    """The NICs the server has VM ``vm`` mirror ports with."""
    return sorted(i["name"] for v in stack.status(detail=False)["vms"] if v["name"] == vm for i in v["interfaces"])


def test_the_switches_present_at_the_start_get_vms_and_route(discovered):
    assert _vm_names(discovered) == ["sw1", "sw2", "sw3"]
    status = discovered.status()
    assert status["admissions"] == {"admitted": 3, "rejected": 0}
    sw1 = next(vm for vm in status["vms"] if vm["name"] == "sw1")
    nics = {i["name"]: i["addresses"][0] for i in sw1["interfaces"]}
    # port 1 faces the host; the others are unnumbered: the router id
    assert nics["eth1"] == "10.1.1.1/24" and nics["eth2"] == nics["eth3"] == "10.255.0.1/32"
    assert "eth4" in nics  # the port towards sD, which has not joined yet, is up on sA's side


def test_a_switch_that_joins_gets_its_vm_and_is_routed_to(discovered):
    network.set_link("C-D", "down", state_path=discovered.lab_state)  # sD joins with its port 2 down
    started = time.monotonic()
    decision = discovered.join_switch("sD")
    assert decision["admitted"] and decision["vm"] == "sw4" and decision["template"] == "sw"
    wait_for(lambda: ping("h1", "10.1.4.100", timeout=0.3).ok, CONVERGE_TIMEOUT, 0.1)
    first_ping = time.monotonic() - started
    wait_for(discovered.all_pairs_ok, CONVERGE_TIMEOUT, 0.5)
    discovered.wait_verify_clean()
    assert _vm_names(discovered) == ["sw1", "sw2", "sw3", "sw4"]
    assert _nics(discovered, "sw4") == ["eth1", "eth3", "eth4"]
    print(f"\nsD joined: first routed ping h1 -> h4 {first_ping:.1f} s after it connected")


def test_a_port_that_comes_up_later_gets_a_nic_and_carries_routes(discovered):
    network.set_link("C-D", "up", state_path=discovered.lab_state)
    wait_for(lambda: _nics(discovered, "sw4") == ["eth1", "eth2", "eth3", "eth4"], 10, 0.2)
    # sw3 meets sw4 over the new NIC: h3 reaches h4 over C-D, sC port 4 (sw3's eth4)
    wait_for(lambda: route_device("sw3", "10.1.4.100") == "eth4", CONVERGE_TIMEOUT, 0.2)
    wait_for(discovered.all_pairs_ok, CONVERGE_TIMEOUT, 0.5)
    discovered.wait_verify_clean()


def test_a_switch_outside_the_policy_is_rejected_and_holds_only_the_table_miss_drop(discovered):
    decision = discovered.join_switch("sE")
    assert not decision["admitted"] and decision["reason"] == "no template admits it"
    dp = next(d for d in discovered.status()["datapaths"] if d["dpid"] == "0x99")
    wait_for(lambda: next(d for d in discovered.status()["datapaths"] if d["dpid"] == "0x99")["flow_count"] == 1,
             10, 0.1)
    assert dp["admission"]["admitted"] is False
    assert not ping("h1", "10.1.5.100", count=2, interval=0.1, timeout=0.5).received
    assert _vm_names(discovered) == ["sw1", "sw2", "sw3", "sw4"]
    discovered.wait_verify_clean()


def test_a_switch_that_leaves_keeps_its_vm_for_the_grace_period_then_loses_it(discovered):
    discovered.leave_switch("sD")
    time.sleep(3)
    assert "sw4" in _vm_names(discovered) and links.netns_exists("sw4")  # within the 10 s grace period
    discovered.join_switch("sD")  # back in time: the same VM
    wait_for(lambda: ping("h1", "10.1.4.100", timeout=0.3).ok, CONVERGE_TIMEOUT, 0.2)
    discovered.leave_switch("sD")
    wait_for(lambda: "sw4" not in _vm_names(discovered), 30, 0.5)
    wait_for(lambda: not links.netns_exists("sw4"), 10, 0.2)
    wait_for(discovered.all_pairs_ok, CONVERGE_TIMEOUT, 0.5)
    discovered.wait_verify_clean()


def test_a_restarted_server_adopts_the_vms_it_made_and_loses_nothing(discovered):
    pids = {vm: read_pidfile(str(frr.pidfile("ospfd", DEFAULT_RUN_ROOT / vm))) for vm in ("sw1", "sw2", "sw3")}
    assert all(pids.values()), pids
    discovered.server.send_signal(signal.SIGKILL)
    discovered.server.wait(timeout=10)
    discovered.start_server()
    wait_for(lambda: _vm_names(discovered) == ["sw1", "sw2", "sw3"]
             and all(vm["synced"] for vm in discovered.status(detail=False)["vms"]), 30, 0.2)
    discovered.wait_verify_clean()
    assert {vm: read_pidfile(str(frr.pidfile("ospfd", DEFAULT_RUN_ROOT / vm))) for vm in pids} == pids, "a VM was remade"
    log = "".join(text for name, text in discovered.logs() if name == "server.log")
    assert "virtual environment up: 3 VMs on rfvs (3 adopted)" in log
    assert discovered.all_pairs_ok()
