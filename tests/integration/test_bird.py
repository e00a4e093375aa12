"""BIRD 2 as the routing engine, on the real stack: rftest2 with BIRD in every VM,
and with FRR and BIRD mixed. The RF-Client is the same for both engines."""

from __future__ import annotations

import pytest
from tests.scenarios import (
    cut_reroutes_and_restores,
    kill_daemon_under_ping,
    vm_routes,
    wait_for_ecmp_group,
)

from routeflow.harness import CONVERGE_TIMEOUT, Stack, running, wait_for
from routeflow.vnet.bird import birdc

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module", params=["rftest2-bird", "rftest2-mixed"])
def stack(request, tmp_path_factory):
    with running(request.param, tmp_path_factory.mktemp(request.param), Stack.all_pairs_ok) as stack:
        yield stack


def _bird_vms(stack: Stack) -> list[str]:
    return [vm.name for vm in stack.config.vms if vm.engine == "bird"]


def test_all_pairs_through_flows_and_verify_clean(stack):
    before = stack.packet_ins().get("icmp", 0)
    results = stack.all_pairs(count=3, interval=0.05)
    assert all(r.ok for r in results.values()), {k: r for k, r in results.items() if not r.ok}
    assert stack.packet_ins().get("icmp", 0) == before
    stack.wait_verify_clean()


def test_ipv6_all_pairs_through_flows(stack):
    # OSPFv3 from BIRD (and FRR's ospf6d in the mixed example): the same client, the same flows.
    results = stack.all_pairs(count=2, interval=0.05, version=6)
    assert len(results) == 12 and all(r.ok for r in results.values()), {k: r for k, r in results.items() if not r.ok}


def test_bird_runs_ospf_with_full_adjacencies(stack):
    for vm in _bird_vms(stack):
        expected = sum(1 for i in stack.config.vm(vm).interfaces if i.port != 1)
        for protocol in ("ospf1", "ospf6"):  # OSPFv2 (unnamed, BIRD calls it ospf1) and OSPFv3
            neighbours = birdc(vm, f"show ospf neighbors {protocol}")
            assert neighbours.count("Full") == expected, neighbours
        # BIRD's routes reach the kernel, and from there the switch.
        assert any(r["proto"] == "bird" for r in vm_routes(stack, vm)), vm_routes(stack, vm)


def test_ecmp_route_is_a_select_group(stack):
    wait_for_ecmp_group(stack)
    stack.wait_verify_clean()


def test_link_cut_reroutes_and_restores(stack):
    cut_reroutes_and_restores(stack)


def test_bird_killed_and_restarted_leaves_no_stale_flow(stack):
    """kill -9 BIRD in rB (on h1-h2's path; BIRD in both examples) under a ping stream,
    start it again: once its routes are back in rB's kernel, verify is clean within 2 s."""
    assert "rB" in _bird_vms(stack)
    restart = kill_daemon_under_ping(stack, "rB", "bird", "172.31.2.100")
    print(f"bird restart: {restart}")
    assert restart.clean_after_s <= 2.0, restart
    wait_for(stack.all_pairs_ok, CONVERGE_TIMEOUT, 0.5)
