"""Topology files: the graph they describe, and every error with its field path."""

import ipaddress
from pathlib import Path

import pytest

from routeflow.config.loader import load_config
from routeflow.errors import ConfigError
from routeflow.lab.topology import DEFAULT_CONTROLLER, Endpoint, Topology, load_topology, parse_topology
from tests.problems import assert_reported
from tests.problems import problems as config_problems

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

GOOD = {
    "switches": [{"name": "s1", "dpid": "0x1"}, {"name": "s2", "dpid": 2, "controller": "tcp:10.0.0.1:6633"}],
    "hosts": [
        {"name": "h1", "addresses": ["172.31.1.2/24", "2001:db8:1::2/64"], "gateway": "172.31.1.1",
         "gateway6": "2001:db8:1::1"},
        {"name": "h2", "addresses": ["172.31.2.2/24"]},
    ],
    "links": [
        {"ends": ["s1:1", "h1"]},
        {"name": "trunk", "ends": ["s1:2", "s2:7"]},
        {"ends": ["h2", "s2:1"]},
    ],
}


def problems(document: object) -> dict[str, str]:
    return config_problems(parse_topology, document, "topo.yaml")


def good(**changes: object) -> dict:
    return {**GOOD, **changes}


def test_good_topology_model():
    topo = parse_topology(GOOD, "topo.yaml")
    assert [(s.name, s.dpid, s.controller) for s in topo.switches] == [
        ("s1", 1, (DEFAULT_CONTROLLER,)), ("s2", 2, ("tcp:10.0.0.1:6633",))]
    h1 = topo.host("h1")
    assert h1.addresses == (ipaddress.ip_interface("172.31.1.2/24"), ipaddress.ip_interface("2001:db8:1::2/64"))
    assert h1.gateways == (ipaddress.ip_address("172.31.1.1"), ipaddress.ip_address("2001:db8:1::1"))
    assert topo.host("h2").gateways == ()
    assert [link.name for link in topo.links] == ["s1:1-h1", "trunk", "h2-s2:1"]
    assert topo.source == "topo.yaml"


def test_graph_queries():
    topo = parse_topology(GOOD)
    assert topo.find_link("trunk").ends == (Endpoint("s1", 2), Endpoint("s2", 7))
    assert topo.find_link("s2:7").name == "trunk"
    assert topo.find_link("h2").name == "h2-s2:1"
    with pytest.raises(KeyError):
        topo.find_link("s1:9")
    assert sorted(topo.ports("s2")) == [1, 7]
    assert topo.neighbours("s1") == {"h1", "s2"}
    assert topo.attachment("h2") == Endpoint("s2", 1)
    assert topo.interface(Endpoint("s2", 7)) == (None, "s2-p7")
    assert topo.interface(Endpoint("h1")) == ("h1", "eth0")


def test_endpoint_parse():
    assert Endpoint.parse("sA:12") == Endpoint("sA", 12)
    assert str(Endpoint.parse("h1")) == "h1"
    assert Endpoint.parse("R1:eth2") == Endpoint("R1", ifname="eth2") and str(Endpoint("R1", ifname="eth2")) == "R1:eth2"
    assert Endpoint.parse("h1").is_host and Endpoint.parse("s1:2").is_switch
    assert not Endpoint.parse("R1:eth2").is_host and not Endpoint.parse("R1:eth2").is_switch
    for bad in ("", ":1", "s1:", "s1:1x", "s1:e-1"):
        with pytest.raises(ValueError):
            Endpoint.parse(bad)


def test_unknown_keys_and_missing_fields():
    found = problems({"switches": [{"name": "s1", "dpid": 1, "colour": "red"}, {"dpid": 2}],
                      "hosts": [{"name": "h1"}], "extra": 1, "links": [{"ends": ["s1:1", "h1"], "speed": 10}]})
    assert found["extra"] == "unknown key"
    assert found["switches[0].colour"] == "unknown key"
    assert found["switches[1].name"] == "is required"
    assert found["hosts[0].addresses"] == "is required"
    assert found["links[0].speed"] == "unknown key"
    assert problems({})["switches"] == "is required"
    assert "at least one switch" in problems({"switches": []})["switches"]
    assert "must be a mapping" in problems([1, 2])["(top)"]


def test_duplicate_names_dpids_and_link_names():
    found = problems(good(
        switches=[{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 1}, {"name": "h2", "dpid": 3}],
        links=[{"name": "x", "ends": ["s1:1", "h1"]}, {"name": "x", "ends": ["h2", "s2:1"]}]))
    assert_reported(found, {
        "switches[1].dpid": "duplicate datapath id 1 (also at switches[0].dpid)",
        "hosts[1].name": "duplicate node name 'h2' (also at switches[2].name)",
        "links[1].name": "duplicate link name 'x'",
    })


def test_names_too_long_for_linux():
    found = problems(good(switches=[{"name": "switch_number_01", "dpid": 1}, {"name": "s2", "dpid": 2},
                                    {"name": "switch_twelve", "dpid": 3}],
                          links=[{"ends": ["s2:1", "h1"]}, {"ends": ["switch_twelve:1", "h2"]}]))
    assert_reported(found, {
        "switches[0].name": "at most 15 long",
        "links[1].ends[0]": "'switch_twelve-p1' is longer than Linux's 15 characters",
    })
    found = problems(good(hosts=[{"name": "a_very_long_host", "addresses": ["10.0.0.1/24"]}]))
    assert "at most 15 long" in found["hosts[0].name"]


def test_bad_addresses_and_gateways():
    found = problems(good(hosts=[
        {"name": "h1", "addresses": ["172.31.1.2", "300.1.1.1/24", "172.31.9.0/24", "172.31.8.255/24"],
         "gateway": "10.9.9.9", "gateway6": "172.31.1.1"},
        {"name": "h2", "addresses": [], "gateway": "nope"}]))
    assert_reported(found, {
        "hosts[0].addresses[0]": "not an address with prefix length",
        "hosts[0].addresses[1]": "not an address with prefix length",
        "hosts[0].addresses[2]": "network or broadcast address",
        "hosts[0].addresses[3]": "network or broadcast address",
        "hosts[0].gateway": "not in any subnet",
        "hosts[0].gateway6": "not an IPv6 address",
        "hosts[1].addresses": "at least one address",
        "hosts[1].gateway": "not an IP address",
    })


def test_bad_controller_targets():
    found = problems(good(controller="http://x", switches=[
        {"name": "s1", "dpid": 1, "controller": "tcp:1.2.3.4:70000"},
        {"name": "s2", "dpid": 2, "controller": "unix:/run/ovs.sock"}]))
    assert_reported(found, {
        "controller": "not an OpenFlow controller target",
        "switches[0].controller": "not an OpenFlow controller target",
    })
    assert "switches[1].controller" not in found
    topo = parse_topology(good(controller="ssl:[::1]:6653"))
    assert topo.switch("s1").controller == ("ssl:[::1]:6653",)
    assert topo.switch("s2").controller == ("tcp:10.0.0.1:6633",)


def test_bad_links():
    found = problems(good(links=[
        {"ends": ["s1:1", "h1"]},
        {"ends": ["s1:1", "s2:2"]},          # port used twice
        {"ends": ["s9:1", "h2"]},            # unknown switch
        {"ends": ["s2", "h2"]},              # switch without port
        {"ends": ["s2:3", "h2:1"]},          # host with port
        {"ends": ["s2:0", "s1:65280"]},      # port out of range
        {"ends": ["s2:5"]},                  # one end only
        {"ends": ["h1", "h2"]},              # no switch
        {"ends": ["s2:x", 7]},               # malformed
        {"ends": "s1:1"},
    ]))
    assert "duplicate endpoint" in found["links[1].ends[0]"] and "links[0].ends[0]" in found["links[1].ends[0]"]
    assert_reported(found, {
        "links[2].ends[0]": "unknown switch, router or host 's9'",
        "links[3].ends[0]": "is a switch: give a port",
        "links[4].ends[1]": "is a host: name it without a port",
    })
    assert "out of range" in found["links[5].ends[0]"] and "out of range" in found["links[5].ends[1]"]
    assert_reported(found, {
        "links[6].ends": "exactly two endpoints, not 1",
        "links[7].ends": "a switch port or a router NIC at one end",
        "links[8].ends[0]": "is a switch: give a port number",
        "links[8].ends[1]": "not SWITCH:PORT, ROUTER:NIC or HOST",
        "links[9].ends": "must be a list",
    })


def test_host_without_link():
    found = problems(good(links=[{"ends": ["s1:1", "h1"]}]))
    assert found == {"hosts[1].name": "host 'h2' is not connected by any link"}


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("switches: [\n")
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    assert info.value.file == str(path) and "invalid YAML" in str(info.value)


@pytest.mark.parametrize("example", ["rftest1", "rftest2"])
def test_examples_match_their_routeflow_config(example):
    """Every VM mirrors a switch port by port, and the VMs at both ends of a
    switch-to-switch link share a subnet on the mirroring NICs."""
    topo: Topology = load_topology(EXAMPLES / example / "topology.yaml")
    config = load_config(EXAMPLES / example / "routeflow.yaml")
    vm_of = {s.name: config.vms_of_dpid(s.dpid)[0] for s in topo.switches}
    for switch in topo.switches:
        vm = vm_of[switch.name]
        assert sorted(i.port for i in vm.interfaces) == sorted(topo.ports(switch.name))
    for link in topo.links:
        if link.a.is_host or link.b.is_host:
            host_end, switch_end = (link.a, link.b) if link.a.is_host else (link.b, link.a)
            host = topo.host(host_end.node)
            nic = next(i for i in vm_of[switch_end.node].interfaces if i.port == switch_end.port)
            assert str(host.gateway) in [a.split("/")[0] for a in nic.addresses]
            continue
        nets = [{ipaddress.ip_interface(a).network for a in next(
            i for i in vm_of[e.node].interfaces if i.port == e.port).addresses} for e in link.ends]
        assert nets[0] & nets[1], link.name


def test_rftest2_has_equal_cost_paths():
    topo = load_topology(EXAMPLES / "rftest2" / "topology.yaml")
    b_to_c = [mid for mid in topo.neighbours("sB") if mid.startswith("s") and "sC" in topo.neighbours(mid)]
    assert sorted(b_to_c) == ["sA", "sD"]
    assert "sC" not in topo.neighbours("sB")


def test_ipv6_host_addresses_and_gateways():
    topology = parse_topology(good(hosts=[
        {"name": "h1", "addresses": ["2001:DB8:1::2/64"], "gateway6": "fe80::1"},  # link-local router
        {"name": "h2", "addresses": ["172.31.2.2/24", "fd00:2::ffff:ffff:ffff:ffff/64"], "gateway6": "fd00:2::1"},
    ]))
    h1, h2 = topology.hosts
    assert h1.addresses == (ipaddress.ip_interface("2001:db8:1::2/64"),)
    assert h1.gateways == (ipaddress.IPv6Address("fe80::1"),) and h1.gateway is None
    assert h2.gateways == (ipaddress.IPv6Address("fd00:2::1"),)  # all-ones is no broadcast in IPv6
    found = problems(good(hosts=[
        {"name": "h1", "addresses": ["2001:db8:1::/64", "ff02::1/64", "fe80::2/64", "2001:db8:1::2"],
         "gateway6": "2001:db8:9::1"},
        {"name": "h2", "addresses": ["2001:db8:2::2/64"], "gateway6": "ff02::2"}]))
    assert found["hosts[0].addresses[0]"] == ("2001:db8:1::/64 is the Subnet-Router anycast address of "
                                              "2001:db8:1::/64")
    assert "link-local" in found["hosts[0].addresses[2]"]
    assert found["hosts[0].addresses[1]"] == "ff02::1 is a multicast address"
    assert "2001:db8:1::1/64" in found["hosts[0].addresses[3]"]  # the example names IPv6 too
    assert_reported(found, {
        "hosts[0].gateway6": "not in any subnet",
        "hosts[1].gateway6": "not in any subnet",
    })


def test_controller_targets_follow_open_vswitch_grammar():
    for target in ("ptcp:6653", "punix:/run/s1.sock", "tcp:[2001:db8::1]:6653", "ssl:192.0.2.1"):
        assert parse_topology(good(controller=target)).switch("s1").controller == (target,)
    found = problems(good(controller="tcp:controller.example:6653", switches=[
        {"name": "s1", "dpid": 1, "controller": 'tcp:1.2.3.4" x=1'},
        {"name": "s2", "dpid": 2, "controller": "unix:/run/a b"}]))
    assert found["controller"].startswith("'tcp:controller.example:6653' is not an OpenFlow controller target: "
                                          "'controller.example' is not an IPv4 address")
    assert "'1.2.3.4\" x=1' is not an IPv4 address" in found["switches[0].controller"]
    assert "the socket path has characters other than" in found["switches[1].controller"]


def test_names_handed_to_commands():
    """Switches are bridges, hosts and routers namespaces, router NICs interfaces: identifiers."""
    found = problems(good(
        switches=[{"name": "-s1", "dpid": 1}, {"name": "s2\n", "dpid": 2}],
        hosts=[{"name": "../h1", "addresses": ["172.31.1.2/24"]}, {"name": "h2", "addresses": ["172.31.2.2/24"]}],
        routers=[{"name": "R1", "interfaces": [{"name": "-eth1"}, {"name": "eth 2"}]}]))
    reason = "must be a letter then letters, digits or '_', at most 15 long"
    assert_reported(found, {
        "switches[0].name": f"'-s1' {reason}",
        "switches[1].name": f"'s2\\n' {reason}",
        "hosts[0].name": f"'../h1' {reason}",
        "routers[0].interfaces[0].name": f"'-eth1' {reason}",
        "routers[0].interfaces[1].name": f"'eth 2' {reason}",
    })


def test_endpoint_ports_are_ascii_and_bounded():
    for text in ("s1:٣", "s1:²", "s1:1\n"):
        with pytest.raises(ValueError, match="is not SWITCH:PORT, ROUTER:NIC or HOST"):
            Endpoint.parse(text)
    found = problems(good(links=[{"ends": ["s1:" + "9" * 5000, "h1"]}, {"ends": ["h2", "s2:1"]}]))
    assert found == {"links[0].ends[0]": f"port '{'9' * 27}...{'9' * 28}' is out of range (1 to 65279)",
                     "hosts[0].name": "host 'h1' is not connected by any link"}


def test_topology_file_reading_errors(tmp_path):
    """The topology is read as the config is (tests/unit/config/test_safe_yaml.py): file, field, reason."""
    path = tmp_path / "t.yaml"
    text = (EXAMPLES / "rftest2" / "topology.yaml").read_text()
    cases = {
        "  - {name: sA, dpid: 0x1, trunk: 100}": (
            "  - {name: sA, dpid: 0x1, trunk: 100, dpid: 5}",
            {"switches[0].dpid": "duplicate key 'dpid' on line 17, column 39 (first at column 16)"}),
        "  - {name: sB, dpid: 0x2, trunk: 100}": (
            "  - {name: &b sB, dpid: 0x2, trunk: 100}\n  - {name: *b, dpid: " + "2" * 99 + "}",
            {"switches[2].name": "alias *b is not allowed: aliases are refused, write the value out (line 19)",
             "switches[2].dpid": "an integer of 99 digits is too long: at most 64 (line 19)"}),
    }
    for old, (new, expected) in cases.items():
        assert old in text
        path.write_text(text.replace(old, new))
        found = config_problems(lambda _document, file: load_topology(file), None, str(path))
        assert found == expected
    path.write_bytes(text.encode().replace(b"h1", b"h\xe91", 1))
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    offset = text.index("h1") + 1
    assert str(info.value) == (f"{path}: line {text.count(chr(10), 0, offset) + 1}: not UTF-8: byte 0xe9 "
                               f"at byte offset {offset} (invalid continuation byte)")
