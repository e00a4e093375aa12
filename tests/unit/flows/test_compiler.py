"""The flow compiler, checked by forwarding packets through a fake switch."""

import pytest
from tests.datapath import CONNECTED, GW2, GW3, H1, IFACES, MAC1, MAC2, MAC3, NEIGHBOURS, VM, ip_packet, ports
from tests.fakeswitch import forward

from routeflow.config.schema import Config, RfvsConfig, Trunk, VmConfig, VmInterface
from routeflow.flows.compiler import compile_datapath, compile_rfvs, ipv4_prefix
from routeflow.model import Fib, Interface, Neighbour, NextHop, PortDesc, Route


def compiled(routes=(), neighbours=NEIGHBOURS, down=()):
    fib = Fib(IFACES, CONNECTED + tuple(routes), neighbours)
    return compile_datapath(VM, fib, ports(*down))


def test_route_rewrites_macs_decrements_ttl_and_outputs_mapped_port():
    table = compiled([Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"),), proto="ospf")]).table
    out = forward(table, ip_packet("172.31.4.100"))
    assert out.ports == [2]
    assert out.outputs[0]["eth_src"] == MAC2 and out.outputs[0]["eth_dst"] == GW2
    assert out.ttl_decremented and not out.controller


def test_longest_prefix_wins():
    table = compiled([
        Route("172.31.0.0/16", (NextHop("eth3", "10.0.3.2"),)),
        Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"),)),
        Route("0.0.0.0/0", (NextHop("eth3", "10.0.3.2"),)),
    ]).table
    assert forward(table, ip_packet("172.31.4.7")).ports == [2]
    assert forward(table, ip_packet("172.31.9.7")).ports == [3]
    assert forward(table, ip_packet("192.0.2.1")).ports == [3]


def test_connected_host_from_neighbour_table():
    table = compiled().table
    out = forward(table, ip_packet("172.31.1.100", in_port=2, eth_dst=MAC2))
    assert out.ports == [1] and out.outputs[0]["eth_dst"] == H1 and out.outputs[0]["eth_src"] == MAC1


def test_unresolved_connected_host_and_no_route_go_to_vm():
    table = compiled().table
    assert forward(table, ip_packet("172.31.1.55", in_port=2, eth_dst=MAC2)).controller
    assert forward(table, ip_packet("198.51.100.1")).controller


def test_unresolved_gateway_goes_to_vm_and_is_reported():
    result = compiled([Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.9"),))])
    assert forward(result.table, ip_packet("172.31.4.1")).controller
    assert [(u.prefix, u.gateway) for u in result.unresolved] == [("172.31.4.0/24", "10.0.2.9")]


def test_control_traffic_goes_to_vm_and_transit_icmp_does_not():
    table = compiled([Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"),))]).table
    arp = {"in_port": 1, "eth_type": 0x0806, "eth_dst": "ff:ff:ff:ff:ff:ff"}
    assert forward(table, arp).controller
    ospf = {"in_port": 2, "eth_type": 0x0800, "eth_dst": "01:00:5e:00:00:05", "ipv4_dst": "224.0.0.5", "ip_proto": 89}
    assert forward(table, ospf).controller
    bgp = ip_packet("10.0.2.1", in_port=2, eth_dst=MAC2, ip_proto=6, tcp_dst=179)
    assert forward(table, bgp).controller
    ping_router = ip_packet("172.31.1.1")
    assert forward(table, ping_router).controller
    ping_loopback = ip_packet("10.255.0.1")
    assert forward(table, ping_loopback).controller
    transit = forward(table, ip_packet("172.31.4.100"))
    assert not transit.controller and transit.ports == [2]


def test_frames_not_for_router_mac_are_dropped():
    table = compiled([Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"),))]).table
    assert forward(table, ip_packet("172.31.4.100", eth_dst="0e:00:00:00:00:99")).dropped
    # The router MAC of another port is not admitted on this one.
    assert forward(table, ip_packet("172.31.4.100", in_port=1, eth_dst=MAC2)).dropped


def test_ecmp_route_uses_a_select_group_shared_by_routes_with_same_next_hops():
    hops = (NextHop("eth2", "10.0.2.2"), NextHop("eth3", "10.0.3.2"))
    result = compiled([Route("172.31.4.0/24", hops), Route("172.31.5.0/24", tuple(reversed(hops)))])
    table = result.table
    assert len(table.groups) == 1
    out = forward(table, ip_packet("172.31.4.100"))
    assert sorted(b[0]["port"] for b in out.buckets) == [2, 3]
    assert {b[0]["eth_dst"] for b in out.buckets} == {GW2, GW3}
    assert out.ttl_decremented
    other = forward(table, ip_packet("172.31.5.1"))
    assert [b[0]["port"] for b in other.buckets] == [b[0]["port"] for b in out.buckets]


def test_group_id_is_stable_across_compilations():
    hops = (NextHop("eth2", "10.0.2.2"), NextHop("eth3", "10.0.3.2"))
    a = compiled([Route("172.31.4.0/24", hops)]).table.groups
    b = compiled([Route("172.31.9.0/24", hops), Route("172.31.4.0/24", hops)]).table.groups
    assert a.keys() == b.keys()


def test_port_down_removes_its_next_hops_and_its_admission():
    hops = (NextHop("eth2", "10.0.2.2"), NextHop("eth3", "10.0.3.2"))
    table = compiled([Route("172.31.4.0/24", hops)], down=(3,)).table
    assert not table.groups
    assert forward(table, ip_packet("172.31.4.100")).ports == [2]
    assert forward(table, ip_packet("172.31.4.100", in_port=3, eth_dst=MAC3)).dropped


def test_blackhole_drops_and_unreachable_goes_to_vm():
    table = compiled([Route("192.0.2.0/24", type="blackhole"), Route("198.51.100.0/24", type="unreachable")]).table
    assert forward(table, ip_packet("192.0.2.1")).dropped
    assert forward(table, ip_packet("198.51.100.1")).controller


def test_route_via_unmapped_interface_yields_no_flow():
    table = compiled([Route("203.0.113.0/24", (NextHop("dummy0", "10.9.9.9"),))]).table
    assert not [f for f in table.flows.values() if ("ipv4_dst", "203.0.113.0/24") in f.match]


def test_explicit_host_route_shadows_neighbour_entry():
    table = compiled([Route("172.31.1.100/32", (NextHop("eth2", "10.0.2.2"),))]).table
    assert forward(table, ip_packet("172.31.1.100", in_port=2, eth_dst=MAC2)).ports == [2]


IFACES6 = (
    Interface("eth1", MAC1, True, ("172.31.1.1/24", "2001:db8:1::1/64", "fe80::1:1/64")),
    Interface("eth2", MAC2, True, ("10.0.2.1/30", "fe80::2:1/64")),
    Interface("eth3", MAC3, True, ("10.0.3.1/30", "fe80::3:1/64")),
    Interface("lo", "00:00:00:00:00:00", True, ("10.255.0.1/32", "2001:db8:ff::1/128", "::1/128")),
)
NEIGHBOURS6 = NEIGHBOURS + (
    Neighbour("eth1", "2001:db8:1::100", H1),
    Neighbour("eth1", "fe80::100", H1),
    Neighbour("eth2", "fe80::2:2", GW2),
    Neighbour("eth3", "fe80::3:2", GW3),
)


def compiled6(routes=(), neighbours=NEIGHBOURS6):
    fib = Fib(IFACES6, CONNECTED + (Route("2001:db8:1::/64", (NextHop("eth1"),)),) + tuple(routes), neighbours)
    return compile_datapath(VM, fib, ports())


def ip6_packet(dst: str, in_port: int = 1, eth_dst: str = MAC1, **extra):
    return {"in_port": in_port, "eth_type": 0x86DD, "eth_dst": eth_dst, "ipv6_dst": dst, "ip_proto": 58, **extra}


def test_ipv6_route_via_link_local_next_hop_is_forwarded_beside_ipv4():
    result = compiled6([Route("2001:db8:4::/48", (NextHop("eth2", "fe80::2:2"),)),
                        Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"),))])
    out = forward(result.table, ip6_packet("2001:db8:4::9"))
    assert out.ports == [2] and out.outputs[0]["eth_dst"] == GW2 and out.outputs[0]["eth_src"] == MAC2
    assert out.ttl_decremented and not out.controller
    assert forward(result.table, ip_packet("172.31.4.9")).ports == [2]
    assert not result.unresolved


def test_ipv6_connected_hosts_but_no_link_local_host_flows():
    table = compiled6().table
    out = forward(table, ip6_packet("2001:db8:1::100", in_port=2, eth_dst=MAC2))
    assert out.ports == [1] and out.outputs[0]["eth_dst"] == H1
    # An unknown host on the connected subnet goes to the VM, which runs ND.
    assert forward(table, ip6_packet("2001:db8:1::55", in_port=2, eth_dst=MAC2)).controller
    assert not [f for f in table.flows.values() if ("ipv6_dst", "fe80::100") in f.match]


def test_ipv6_control_traffic_goes_to_vm_and_transit_icmpv6_does_not():
    table = compiled6([Route("2001:db8:4::/48", (NextHop("eth2", "fe80::2:2"),))]).table
    ns = ip6_packet("ff02::1:ff00:100", eth_dst="33:33:ff:00:01:00", icmpv6_type=135)
    ospf3 = ip6_packet("ff02::5", in_port=2, eth_dst="33:33:00:00:00:05", ip_proto=89)
    for packet in (ns, ospf3, ip6_packet("2001:db8:1::1"), ip6_packet("fe80::1:1"), ip6_packet("2001:db8:ff::1"),
                   ip6_packet("2001:db8:ff::1", ip_proto=6, tcp_dst=179)):
        assert forward(table, packet).controller, packet
    transit = forward(table, ip6_packet("2001:db8:4::1", icmpv6_type=128))
    assert not transit.controller and transit.ports == [2]


def test_ipv6_ecmp_unresolved_and_unroutable():
    hops = (NextHop("eth2", "fe80::2:2"), NextHop("eth3", "fe80::3:2"))
    result = compiled6([Route("2001:db8:5::/48", hops), Route("2001:db8:6::/48", (NextHop("eth2", "fe80::2:9"),)),
                        Route("2001:db8:7::/48", type="blackhole"), Route("ff00::/8", (NextHop("eth1"),))])
    out = forward(result.table, ip6_packet("2001:db8:5::1"))
    assert sorted(b[0]["port"] for b in out.buckets) == [2, 3]
    assert forward(result.table, ip6_packet("2001:db8:6::1")).controller
    assert [(u.prefix, u.gateway) for u in result.unresolved] == [("2001:db8:6::/48", "fe80::2:9")]
    assert forward(result.table, ip6_packet("2001:db8:7::1")).dropped
    assert not [f for f in result.table.flows.values() if ("ipv6_dst", "ff00::/8") in f.match]


TRUNKED = VmConfig(name="rA", dpid=1, interfaces=VM.interfaces, trunk=Trunk(100))


def trunked(routes=()):
    return compile_datapath(TRUNKED, Fib(IFACES, CONNECTED + tuple(routes), NEIGHBOURS), ports()).table


def test_trunk_carries_slow_path_tagged_with_ingress_port_and_no_packet_in():
    table = trunked([Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.9"),))])  # unresolved
    arp = forward(table, {"in_port": 3, "eth_type": 0x0806, "eth_dst": "ff:ff:ff:ff:ff:ff"})
    assert not arp.controller and arp.ports == [100] and arp.outputs[0]["vlan_vid"] == 0x1003
    for packet in (ip_packet("172.31.1.1"), ip_packet("198.51.100.1"), ip_packet("172.31.4.1")):
        out = forward(table, packet)  # the router's address, no route, unresolved next hop
        assert not out.controller and out.ports == [100] and out.outputs[0]["vlan_vid"] == 0x1001
        assert not out.ttl_decremented
    transit = forward(table, ip_packet("172.31.1.100", in_port=2, eth_dst=MAC2))
    assert transit.ports == [1] and "vlan_vid" not in transit.outputs[0]


def test_trunk_frames_from_the_vm_leave_untagged_on_the_port_their_tag_names():
    table = trunked()
    out = forward(table, {"in_port": 100, "vlan_vid": 0x1002, "eth_type": 0x0806, "eth_dst": "ff:ff:ff:ff:ff:ff"})
    assert out.ports == [2] and "vlan_vid" not in out.outputs[0] and not out.controller
    # Untagged, or tagged for no port of the VM: dropped, never routed or punted.
    assert forward(table, {"in_port": 100, "eth_type": 0x0806, "eth_dst": "ff:ff:ff:ff:ff:ff"}).dropped
    assert forward(table, {**ip_packet("172.31.1.1", in_port=100), "vlan_vid": 0x1009}).dropped
    assert forward(table, ip_packet("172.31.1.100", in_port=100)).dropped


def test_without_trunk_the_slow_path_goes_to_the_controller():
    table = compiled().table
    assert not any(a[0] in ("push_vlan", "pop_vlan") for f in table.flows.values() for a in f.actions)


RFVS = RfvsConfig(dpid=0x7266)
PLAIN = VmConfig(name="rB", dpid=2, interfaces=(VmInterface("eth1", 1),))


def rfvs_table(nics, port_names):
    config = Config(vms=(TRUNKED, PLAIN), rfvs=RFVS)
    rfvs_ports = {n: PortDesc(n, name, f"aa:00:00:00:01:{n:02x}", True) for n, name in port_names.items()}
    return compile_rfvs(config, nics, rfvs_ports)


def test_rfvs_cables_identified_nics_to_their_trunk():
    table = rfvs_table({("rA", "eth1"): 11, ("rA", "eth2"): 12, ("rB", "eth1"): 21},
                       {11: "rA.1", 12: "rA.2", 21: "rB.1", 7: "rft1-rf"})
    up = forward(table, ip_packet("172.31.1.100", in_port=12))
    assert up.ports == [7] and up.outputs[0]["vlan_vid"] == 0x1002 and not up.controller
    down = forward(table, {**ip_packet("172.31.1.100", in_port=7), "vlan_vid": 0x1001})
    assert down.ports == [11] and "vlan_vid" not in down.outputs[0]
    # eth3 has no mapping yet, rB has no trunk: the controller relays them.
    assert forward(table, {**ip_packet("10.0.3.2", in_port=7), "vlan_vid": 0x1003}).dropped
    assert forward(table, ip_packet("10.0.0.1", in_port=21)).controller
    # Mapping packets always reach the controller, whatever port they come from.
    assert forward(table, {"in_port": 11, "eth_type": 0x0A0A}).controller


def test_rfvs_without_the_trunk_port_relays_everything():
    table = rfvs_table({("rA", "eth1"): 11}, {11: "rA.1"})
    assert forward(table, ip_packet("172.31.1.100", in_port=11)).controller


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.0/8", ("10.0.0.0", 8, "10.0.0.0/8")),
    ("0.0.0.0/0", ("0.0.0.0", 0, "0.0.0.0/0")),
    ("192.0.2.7", ("192.0.2.7", 32, "192.0.2.7/32")),
    ("192.0.2.7/32", ("192.0.2.7", 32, "192.0.2.7/32")),
    ("10.0.0.5/24", ("10.0.0.0", 24, "10.0.0.0/24")),     # host bits set: normalised
    ("010.0.0.0/8", None),                   # leading zeros are not IPv4 here
    ("256.0.0.0/8", None),
    ("10.0.0.0/33", None),
    ("2001:db8::/32", None),
    ("bogus", None),
])
def test_ipv4_prefix(text, expected):
    assert ipv4_prefix(text) == expected
