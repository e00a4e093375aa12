"""Legacy routers in topology files: the model, the lab plan, and every error with its path."""

import ipaddress
from pathlib import Path

import pytest

from routeflow.config.loader import load_config
from routeflow.lab.network import Veth, plan_lab
from routeflow.lab.topology import Endpoint, load_topology, parse_topology
from tests.problems import assert_reported
from tests.problems import problems as config_problems

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RUN = Path("/run/rf-test/lab")

GOOD = {
    "switches": [{"name": "s1", "dpid": 1}],
    "hosts": [{"name": "h9", "addresses": ["172.31.9.100/24"], "gateway": "172.31.9.1"}],
    "routers": [
        {"name": "R1", "engine": "frr", "daemons": ["ospfd", "bgpd"], "loopback": ["10.255.0.9/32"],
         "interfaces": [{"name": "eth1", "addresses": ["10.0.1.9/24"]},
                        {"name": "eth2", "addresses": ["172.31.9.1/24"]},
                        {"name": "eth3", "addresses": ["10.0.3.1/30"]}],
         "engine_config": "router ospf\n"},
        {"name": "R2", "engine": "bird", "interfaces": [{"name": "eth1", "addresses": ["10.0.3.2/30"]}],
         "engine_config": "router id 10.0.3.2;\n"},
    ],
    "links": [
        {"ends": ["s1:6", "R1:eth1"]},
        {"name": "R1-h9", "ends": ["h9", "R1:eth2"]},
        {"ends": ["R1:eth3", "R2:eth1"]},
    ],
}


def problems(document: object) -> dict[str, str]:
    return config_problems(parse_topology, document, "topo.yaml")


def with_routers(routers, links=None) -> dict:
    return {**GOOD, "routers": routers, "links": links if links is not None else GOOD["links"]}


def test_router_model():
    topo = parse_topology(GOOD)
    r1 = topo.router("R1")
    assert (r1.engine, r1.daemons, r1.loopback) == ("frr", ("ospfd", "bgpd"),
                                                    (ipaddress.ip_interface("10.255.0.9/32"),))
    assert r1.interface("eth2").addresses == (ipaddress.ip_interface("172.31.9.1/24"),)
    assert topo.router("R2").engine == "bird" and topo.router("R2").daemons == ()
    assert topo.find_link("R1:eth1").ends == (Endpoint("s1", 6), Endpoint("R1", ifname="eth1"))
    assert topo.interface(Endpoint("R1", ifname="eth3")) == ("R1", "eth3")
    assert topo.attachment("h9") == Endpoint("R1", ifname="eth2")
    assert topo.ports("s1") == {6: topo.links[0]}


def test_lab_plan_of_routers():
    plan = plan_lab(parse_topology(GOOD), RUN)
    assert plan.veths == (
        Veth("s1:6-R1:eth1", "s1-p6", "eth1", "R1"),        # switch end in the root namespace
        Veth("R1-h9", "eth2", "eth0", "h9", "R1"),          # both ends in namespaces, the host's as peer
        Veth("R1:eth3-R2:eth1", "eth3", "eth1", "R2", "R1"),
    )
    r1, r2 = plan.routers
    assert r1.netns == "R1" and r1.addresses[0] == ("eth1", (ipaddress.ip_interface("10.0.1.9/24"),))
    assert dict(r1.sysctls)["net.ipv4.ip_forward"] == "1"
    assert r1.engine_run.run_dir == RUN / "R1"
    assert [d.name for d in r1.engine_run.daemons] == ["zebra", "ospfd", "bgpd"]
    assert "hostname R1" in r1.engine_run.conf
    assert [d.name for d in r2.engine_run.daemons] == ["bird"]


def test_legacy_example():
    topo = load_topology(EXAMPLES / "legacy" / "topology.yaml")
    assert [(r.name, r.engine) for r in topo.routers] == [("L1", "frr"), ("L2", "bird")]
    assert topo.find_link("B-L1").ends == (Endpoint("sB", 6), Endpoint("L1", ifname="eth1"))
    assert topo.attachment("h9") == Endpoint("L1", ifname="eth2")


@pytest.mark.parametrize("example", ["legacy", "ebgp", "ebgp-peer-initiates"])
def test_router_examples_match_their_routeflow_config(example):
    """Each VM mirrors its switch port by port; a VM NIC facing a legacy router
    shares a subnet with that router's NIC, and every host's gateway is a
    VM or legacy router address on its link."""
    topo = load_topology(EXAMPLES / example / "topology.yaml")
    config = load_config(EXAMPLES / example / "routeflow.yaml")
    vm_of = {s.name: config.vms_of_dpid(s.dpid)[0] for s in topo.switches}
    for switch in topo.switches:
        assert sorted(i.port for i in vm_of[switch.name].interfaces) == sorted(topo.ports(switch.name))

    def nets(end: Endpoint) -> set:
        if end.is_switch:
            nic = next(i for i in vm_of[end.node].interfaces if i.port == end.port)
            return {ipaddress.ip_interface(a).network for a in nic.addresses}
        if end.is_host:
            return {a.network for a in topo.host(end.node).addresses}
        return {a.network for a in topo.router(end.node).interface(end.ifname).addresses}

    for link in topo.links:
        assert nets(link.a) & nets(link.b), link.name
    for host in topo.hosts:
        end = topo.attachment(host.name)
        owner = (next(i for i in vm_of[end.node].interfaces if i.port == end.port).addresses if end.is_switch
                 else [str(a) for a in topo.router(end.node).interface(end.ifname).addresses])
        assert str(host.gateway) in [a.split("/")[0] for a in owner], host.name


def test_ebgp_examples_differ_in_who_opens_the_session():
    passive = {}
    for example in ("ebgp", "ebgp-peer-initiates"):
        e1 = load_topology(EXAMPLES / example / "topology.yaml").router("E1")
        rb = load_config(EXAMPLES / example / "routeflow.yaml").vm("rB")
        passive[example] = ("neighbor 10.0.29.2 passive" in e1.engine_config, "neighbor 10.0.29.9 passive" in rb.engine_config)
        assert e1.daemons == ("bgpd", "staticd") and "bgpd" in rb.daemons
    assert passive == {"ebgp": (True, False), "ebgp-peer-initiates": (False, True)}


def test_bad_routers():
    found = problems(with_routers([
        {"name": "R1", "engine": "quagga", "daemons": ["ospfd", "isisd"], "colour": 1,
         "interfaces": [{"name": "eth1", "addresses": ["10.0.0.1"]}, {"name": "eth1"}, {"name": "lo"}],
         "engine_config": ["x"]},
        {"name": "R2", "engine": "bird", "daemons": ["bgpd"], "interfaces": []},
        {"engine": "frr"},
    ], links=[{"ends": ["s1:6", "R1:eth1"]}, {"ends": ["h9", "s1:1"]}]))
    assert_reported(found, {
        "routers[0].engine": "'quagga' is not one of frr, bird",
        "routers[0].daemons[1]": "'isisd' is not one of",
        "routers[0].interfaces[0].addresses[0]": "not an address with prefix length",
        "routers[0].interfaces[1].name": "duplicate interface name 'eth1'",
        "routers[0].interfaces[2].name": "'lo' is the loopback",
        "routers[0].engine_config": "must be text",
        "routers[1].daemons": "only the frr engine runs daemons",
        "routers[1].interfaces": "at least one interface",
    })
    assert found["routers[0].colour"] == "unknown key"
    assert found["routers[2].name"] == "is required"
    assert found["routers[2].interfaces"] == "is required"


def test_bad_router_endpoints_and_unlinked_nics():
    found = problems(with_routers(GOOD["routers"], links=[
        {"ends": ["s1:6", "R1"]},             # router without NIC
        {"ends": ["R1:eth9", "h9"]},          # unknown NIC
        {"ends": ["R1:eth2", "h9"]},
        {"ends": ["R1:eth3", "R2:eth1"]},
        {"ends": ["s1:7", "R1:eth3"]},        # NIC used twice
        {"ends": ["s1:8", "h9:eth0"]},        # host with a NIC name
    ]))
    assert_reported(found, {
        "links[0].ends[1]": "'R1' is a router: name its NIC, like R1:eth1",
        "links[1].ends[0]": "router 'R1' has no interface 'eth9' (it has: eth1, eth2, eth3)",
        "links[4].ends[1]": "'R1:eth3' (also at links[3].ends[0])",
        "links[5].ends[1]": "is a host: name it without a port",
    })
    assert found["routers[0].interfaces[0].name"] == "R1:eth1 is not connected by any link"
    assert "duplicate node name" in problems({**GOOD, "hosts": [
        {"name": "R1", "addresses": ["10.9.9.9/24"]}]})["routers[0].name"]
