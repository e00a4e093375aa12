"""What the lab builder would create for a topology (no system access)."""

from pathlib import Path

from routeflow.lab.network import Veth, plan_lab
from routeflow.lab.topology import load_topology
from routeflow.vnet.ovs import BridgeSpec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_rftest1_plan():
    plan = plan_lab(load_topology(EXAMPLES / "rftest1" / "topology.yaml"))
    assert [h.name for h in plan.hosts] == ["b1", "b2"]
    assert plan.veths == (Veth("s1-b1", "s1-p1", "eth0", "b1"), Veth("s1-b2", "s1-p2", "eth0", "b2"))
    assert plan.bridges == (BridgeSpec("s1", 1, ("tcp:127.0.0.1:6653",), (("s1-p1", 1), ("s1-p2", 2))),)


def test_rftest2_plan_puts_host_ends_in_namespaces_and_numbers_ports():
    plan = plan_lab(load_topology(EXAMPLES / "rftest2" / "topology.yaml"))
    veths = {v.link: v for v in plan.veths}
    assert veths["A-B"] == Veth("A-B", "sA-p3", "sB-p2", None)
    assert veths["C-h3"] == Veth("C-h3", "sC-p1", "eth0", "h3")
    bridges = {b.name: b for b in plan.bridges}
    assert [b.dpid for b in plan.bridges] == [1, 2, 3, 4]
    assert bridges["sA"].ports == (("sA-p1", 1), ("sA-p3", 3), ("sA-p4", 4), ("sA-p5", 5))
    assert bridges["sD"].ports == (("sD-p1", 1), ("sD-p2", 2), ("sD-p3", 3), ("sD-p4", 4))
    # Every root-namespace veth end is a port of exactly one bridge.
    roots = [v.ifname for v in plan.veths] + [v.peer for v in plan.veths if v.peer_netns is None]
    ports = [name for b in plan.bridges for name, _ in b.ports]
    assert sorted(roots) == sorted(ports)


def test_host_first_link_is_oriented_switch_first():
    from routeflow.lab.topology import parse_topology

    topo = parse_topology({"switches": [{"name": "s1", "dpid": 1}],
                           "hosts": [{"name": "h", "addresses": ["10.0.0.2/24"]}],
                           "links": [{"ends": ["h", "s1:4"]}]})
    assert plan_lab(topo).veths == (Veth("h-s1:4", "s1-p4", "eth0", "h"),)


def test_hosts_and_routers_get_ipv6_without_dad_delays():
    plan = plan_lab(load_topology(EXAMPLES / "rftest2" / "topology.yaml"))
    assert dict(plan.host_sysctls)["net.ipv6.conf.default.accept_dad"] == "0"
    assert "net.ipv6.conf.all.forwarding" not in dict(plan.host_sysctls)  # hosts do not route
