"""Several VMs on one datapath: each in its own routing context, isolated, with the same
addresses; checked by forwarding packets through a fake switch holding their union."""

import itertools

import pytest
from tests.fakeswitch import forward
from tests.tenants import CONFIG, SHARED_PORT, TENANTS, VMS, fib, ports, virtual_ports

from routeflow.config.schema import MAX_VMS_PER_DATAPATH
from routeflow.flows import pipeline as P
from routeflow.flows.compiler import SOLE, compile_datapath, routing_context
from routeflow.flows.incremental import IncrementalCompiler
from routeflow.model import VID_PRESENT, NextHop, PortDesc, Route, Table


def union(fibs=None, down=()) -> Table:
    """The shared datapath's table: each tenant's translation in its context."""
    table = Table()
    for name, vm in VMS.items():
        part = compile_datapath(vm, (fibs or {}).get(name) or fib(name), ports(*down), routing_context(CONFIG, vm))
        for key, flow in part.table.flows.items():
            assert table.flows.setdefault(key, flow) == flow, f"two tenants disagree on {key}"
        table.groups.update(part.table.groups)
    return table


def packet(port: int, vlan: int | None, eth_dst: str, dst: str) -> dict[str, object]:
    pkt: dict[str, object] = {"in_port": port, "eth_type": 0x0800, "eth_dst": eth_dst, "ipv4_dst": dst,
                              "ip_proto": 1}
    if vlan is not None:
        pkt["vlan_vid"] = vlan | VID_PRESENT
    return pkt


def egress(outcome) -> set[tuple[int, int | None]]:
    """The (port, VLAN) pairs a packet left by, through flows or group buckets."""
    outputs = outcome.outputs + [o for bucket in outcome.buckets for o in bucket]
    return {(o["port"], o["vlan_vid"] & 0xFFF if "vlan_vid" in o else None) for o in outputs}


def test_the_pipeline_has_a_fib_table_for_as_many_vms_as_the_config_lets_share_a_datapath():
    assert P.MAX_CONTEXTS == MAX_VMS_PER_DATAPATH
    assert P.fib_table(MAX_VMS_PER_DATAPATH - 1) < P.SLOW_PATH.table_id


def test_each_tenant_has_its_own_fib_table_and_the_first_keeps_logical_splits():
    assert routing_context(CONFIG, VMS["tA"]).fib_table == P.FIB.table_id
    assert routing_context(CONFIG, VMS["tB"]).fib_table == P.FIB_CONTEXT_BASE
    assert routing_context(CONFIG, VMS["tA"]).shared and SOLE.fib_table == P.FIB.table_id


@pytest.mark.parametrize("name", TENANTS)
def test_a_tenants_traffic_is_routed_by_its_routes_out_of_its_ports(name):
    t, table = TENANTS[name], union()
    out = forward(table, packet(t["port"], None, t["macs"][0], "10.2.0.9"))
    assert egress(out) == {(SHARED_PORT, t["vlan"])}
    assert out.outputs[0]["eth_src"] == t["macs"][1] and out.outputs[0]["eth_dst"] == t["gw"]
    assert out.ttl_decremented
    # and back: tagged in on its VLAN, untagged out to its own host with the same address
    back = forward(table, packet(SHARED_PORT, t["vlan"], t["macs"][1], "10.1.0.100"))
    assert egress(back) == {(t["port"], None)}
    assert back.outputs[0]["eth_dst"] == t["host"]


def test_no_packet_of_one_tenant_leaves_by_another_tenants_port():
    """Every ingress virtual port, every router MAC (its own tenant's and the other's),
    every destination either tenant routes: egress only ever by the ingress tenant's ports."""
    macs = [m for t in TENANTS.values() for m in t["macs"]] + ["ff:ff:ff:ff:ff:ff"]
    destinations = ["10.1.0.100", "10.1.0.1", "10.0.0.2", "10.0.0.1", "10.2.0.9", "10.9.9.9"]
    table = union({"tA": fib("tA", Route("10.3.0.0/24", (NextHop("eth1", "10.1.0.100"),))),
                   "tB": fib("tB", Route("10.4.0.0/24", (NextHop("eth2", "10.0.0.2"), NextHop("eth1", "10.1.0.100"))))})
    checked = 0
    for name in TENANTS:
        own = set(virtual_ports(name))
        for (port, vlan), mac, dst in itertools.product(own, macs, destinations + ["10.3.0.1", "10.4.0.1"]):
            assert egress(forward(table, packet(port, vlan, mac, dst))) <= own, (name, port, vlan, mac, dst)
            checked += 1
    assert checked == 2 * 2 * 5 * 8


def test_overlapping_prefixes_live_side_by_side():
    table = union()
    keys = [k for k in table.flows if ("ipv4_dst", "10.2.0.0/24") in k.match]
    assert sorted(k.table for k in keys) == [P.FIB.table_id, P.FIB_CONTEXT_BASE]


def test_the_routers_own_addresses_reach_the_slow_path_by_their_ports_only():
    table = union()
    for name, t in TENANTS.items():
        for port, vlan in virtual_ports(name):
            out = forward(table, packet(port, vlan, "ff:ff:ff:ff:ff:ff", "10.1.0.1"))
            assert out.controller and not out.outputs
    own = [k for k in table.flows if ("ipv4_dst", "10.1.0.1") in k.match]
    assert all(dict(k.match).get("in_port") for k in own) and len(own) == 4


def test_a_port_down_takes_only_its_tenants_virtual_ports():
    table = union(down=(1,))
    a, b = TENANTS["tA"], TENANTS["tB"]
    assert forward(table, packet(1, None, a["macs"][0], "10.2.0.9")).dropped
    assert egress(forward(table, packet(2, None, b["macs"][0], "10.2.0.9"))) == {(SHARED_PORT, b["vlan"])}


def test_vlan_sub_interfaces_take_the_controller_with_a_trunk_too():
    from routeflow.config.loader import parse_config
    config = parse_config({"vms": [
        {"name": "tA", "dpid": 1, "engine": "none", "trunk": {"port": 9}, "interfaces": [
            {"name": "eth1", "port": 1}, {"name": "eth2", "port": 3, "vlan": 10}]}]})
    vm = config.vms[0]
    table = compile_datapath(vm, fib("tA"), {**ports(), 9: PortDesc(9, "s1-eth9", "aa:00:00:00:00:09", True)}, SOLE).table
    arp = {"in_port": 3, "vlan_vid": 10 | VID_PRESENT, "eth_type": 0x0806, "eth_dst": "ff:ff:ff:ff:ff:ff"}
    assert forward(table, arp).controller
    arp_untagged = {"in_port": 1, "eth_type": 0x0806, "eth_dst": "ff:ff:ff:ff:ff:ff"}
    out = forward(table, arp_untagged)
    assert not out.controller and egress(out) == {(9, 1)}


@pytest.mark.parametrize("name", TENANTS)
def test_incremental_equals_full_in_a_shared_context(name):
    vm, ctx = VMS[name], routing_context(CONFIG, VMS[name])
    base = fib(name)
    inc = IncrementalCompiler(vm, ctx)
    inc.rebuild({i.ifname: i for i in base.interfaces}, {r.prefix: r for r in base.routes},
                {(n.ifname, n.ip): n for n in base.neighbours}, ports())
    extra = Route("10.5.0.0/16", (NextHop("eth2", "10.0.0.2"), NextHop("eth1", "10.1.0.100")))
    routes = {r.prefix: r for r in (*base.routes, extra)}
    inc.update(routes, {(n.ifname, n.ip): n for n in base.neighbours}, [extra.prefix], [])
    full = compile_datapath(vm, fib(name, extra), ports(), ctx).table
    assert inc.table.flows == full.flows and inc.table.groups == full.groups
    assert all(g.group_id for g in full.groups.values())
