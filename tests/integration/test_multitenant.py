"""Multiplexing on the real stack (``examples/multitenant``): two tenants with the same
addresses share three switches, red on FRR and blue on BIRD. Each host reaches its own
tenant's hosts only; a cut of a ring link, which carries both tenants, reroutes both and
leaks neither; verify checks each tenant's routes against its own FIB table."""

from __future__ import annotations

import pytest

from routeflow.flows import pipeline as P
from routeflow.harness import CONVERGE_TIMEOUT, Stack, route_device, running, wait_for
from routeflow.lab import network

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def multitenant(tmp_path_factory) -> Stack:
    with running("multitenant", tmp_path_factory.mktemp("multitenant"), lambda s: s.all_pairs_ok()) as stack:
        stack.wait_verify_clean()
        yield stack


#: The MACs of each tenant's router NICs begin so (examples/multitenant/routeflow.yaml).
TENANT_MACS = {"red": "02:52:46:1", "blue": "02:52:46:2"}


def _routers_neighbour_their_own_tenant_only(stack: Stack) -> None:
    """The addresses are the same in both tenants, so their routes look alike: what tells the
    routing domains apart is who a router's next hops are. Every neighbour a router has on a
    ring link must be a router of its own tenant (the NIC MACs say whose)."""
    for vm in stack.status()["vms"]:
        tenant = "red" if vm["name"].startswith("red") else "blue"
        ring = [n for n in vm["neighbours"] if n["ifname"] in ("eth3", "eth4")]
        assert ring, f"{vm['name']} has no neighbour on the ring"
        assert all(n["mac"].startswith(TENANT_MACS[tenant]) for n in ring), (vm["name"], ring)


def test_each_tenant_reaches_its_own_hosts_and_never_the_others(multitenant):
    pairs = multitenant.all_pairs(count=2, interval=0.05)
    assert len(pairs) == 12 and all(r.ok for r in pairs.values()), pairs
    for tenant, (requests, replies, leaked) in multitenant.tenant_leaks().items():
        assert requests == 27 and replies > 0, (tenant, requests, replies)
        assert leaked == {}, f"{tenant}'s pings reached {leaked}"


def test_each_tenants_routes_are_in_its_own_fib_table_on_every_switch(multitenant):
    status = multitenant.status()
    for dp in status["datapaths"]:
        if dp["mirrored_by"].startswith("RFVS"):
            continue
        assert dp["mirrored_by"].count(",") == 1  # two tenants on each switch
        # the same prefix, once per tenant's FIB table
        tables = sorted(int(f.split(",")[0].removeprefix("table=")) for f in dp["flows"]
                        if "ipv4_dst=10.1.2.0/24 " in f)
        assert tables == [P.fib_table(0), P.fib_table(1)], (dp["dpid"], tables)
    nics = {(vm["name"], i["name"]): (i["port"], i["vlan"]) for vm in status["vms"] for i in vm["interfaces"]}
    assert nics["redA", "eth3"] == (3, 10) and nics["blueA", "eth3"] == (3, 20)
    _routers_neighbour_their_own_tenant_only(multitenant)


def test_a_cut_of_a_shared_link_reroutes_both_tenants_and_leaks_neither(multitenant):
    # A-B carries red's VLAN 10 and blue's VLAN 20: both go round by C while it is down.
    wait_for(lambda: route_device("red1", "10.1.2.100") is not None, 10, 0.2)
    for vm in ("redA", "blueA"):
        wait_for(lambda vm=vm: route_device(vm, "10.1.2.100") == "eth3", CONVERGE_TIMEOUT, 0.2)
    network.set_link("A-B", "down", state_path=multitenant.lab_state)
    try:
        for vm in ("redA", "blueA"):
            wait_for(lambda vm=vm: route_device(vm, "10.1.2.100") == "eth4", 30, 0.2)
        wait_for(lambda: multitenant.all_pairs_ok(), 30, 0.5)
        multitenant.wait_verify_clean()
        for tenant, (_, _, leaked) in multitenant.tenant_leaks(count=1).items():
            assert leaked == {}, f"{tenant}'s pings reached {leaked} while A-B was down"
        _routers_neighbour_their_own_tenant_only(multitenant)
    finally:
        network.set_link("A-B", "up", state_path=multitenant.lab_state)
    for vm in ("redA", "blueA"):
        wait_for(lambda vm=vm: route_device(vm, "10.1.2.100") == "eth3", CONVERGE_TIMEOUT, 0.2)
    wait_for(lambda: multitenant.all_pairs_ok(), CONVERGE_TIMEOUT, 0.5)
    multitenant.wait_verify_clean()
