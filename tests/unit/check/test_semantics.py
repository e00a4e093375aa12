"""The pure part of ``routeflow check``: daemons against statements, a config against its lab
topology, which kind of file, and engines' messages mapped back to the engine_config."""

from pathlib import Path

import pytest

from routeflow.check.semantics import (
    Findings,
    bird_errors,
    bird_version,
    compare_lab,
    first_line,
    frr_version,
    idle_daemons,
    kind_hint,
    vtysh_errors,
)
from routeflow.config.frr_daemons import needed_daemons
from routeflow.config.loader import load_config, parse_config
from routeflow.errors import ConfigError
from routeflow.lab.topology import load_topology, parse_topology
from routeflow.vnet.bird import bird_conf
from routeflow.vnet.frr import frr_conf

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

FRR_CONFIG = """\
! comments and blank lines are no statements: router bgp 1

interface eth1
 ip ospf area 0
 ip ospf bfd
router ospf6
router bgp 65000
 neighbor 10.0.0.2 bfd
ip route 10.9.0.0/16 blackhole
vrf red
 ipv6 route 2001:db8::/32 blackhole
router ripng
"""


def fields(findings: list) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in findings:
        found.setdefault(f"{finding.file}: {finding.field}", []).append(finding.reason)
    return found


def test_statements_name_the_daemons_they_need():
    assert needed_daemons(FRR_CONFIG) == {
        "ospfd": (4, "ip ospf area 0"),
        "bfdd": (5, "ip ospf bfd"),
        "ospf6d": (6, "router ospf6"),
        "bgpd": (7, "router bgp 65000"),
        "staticd": (9, "ip route 10.9.0.0/16 blackhole"),
        "ripngd": (12, "router ripng"),
    }
    # "router ospf" is not "router ospf6", nor "ip ospf6" anything.
    assert set(needed_daemons("router ospf\ninterface lo\n ipv6 ospf6 area 0\nrouter rip\nbfd\n")) == {
        "ospfd", "ospf6d", "ripd", "bfdd"}
    assert needed_daemons("") == {}


def test_missing_daemons_are_config_errors_and_idle_ones_warnings():
    vm = {"name": "a", "dpid": 1, "engine": "frr", "daemons": ["ospfd", "ospf6d", "ripd"],
          "interfaces": [{"name": "eth1", "port": 1}], "engine_config": FRR_CONFIG}
    with pytest.raises(ConfigError) as info:
        parse_config({"vms": [vm]}, "cfg.yaml")
    assert [f"{field}: {reason}" for field, reason in info.value.problems] == [
        "vms[0].daemons: 'ip ospf bfd' (engine_config line 5) needs bfdd: add it to daemons",
        "vms[0].daemons: 'router bgp 65000' (engine_config line 7) needs bgpd: add it to daemons",
        "vms[0].daemons: 'ip route 10.9.0.0/16 blackhole' (engine_config line 9) needs staticd: add it to daemons",
        "vms[0].engine_config: 'router ripng' (engine_config line 12) needs ripngd, which routeflow does not run "
        "(it runs zebra and ospfd, bgpd, ospf6d, ripd, staticd, bfdd)",
    ]
    found = Findings()
    idle_daemons(found, "cfg.yaml", "vms[0]", ("ospfd", "ospf6d", "ripd"), FRR_CONFIG)
    assert not found.errors and fields(found.warnings) == {
        "cfg.yaml: vms[0].daemons": ["ripd runs, but no statement of engine_config is for it"]}


def test_every_example_fits_its_topology():
    for directory in sorted(p for p in EXAMPLES.iterdir() if (p / "routeflow.yaml").is_file()):
        found = Findings()
        compare_lab(found, load_config(directory / "routeflow.yaml"), load_topology(directory / "topology.yaml"))
        assert not found.errors, (directory.name, found.errors)


TOPOLOGY = {
    "switches": [{"name": "sA", "dpid": 1, "trunk": 100}, {"name": "sB", "dpid": 2},
                 {"name": "sC", "dpid": 3, "trunk": 100}, {"name": "rfvs", "dpid": 0x7266}],
    "hosts": [{"name": "h1", "addresses": ["172.31.1.100/24"]}],
    "links": [{"ends": ["sA:1", "h1"]}, {"name": "A-B", "ends": ["sA:2", "sB:1"]}, {"ends": ["sB:2", "sC:1"]}],
}


def vm(name: str, dpid: int, ports: list[int], **more: object) -> dict:
    return {"name": name, "dpid": dpid, "engine": "none",
            "interfaces": [{"name": f"eth{p}", "port": p} for p in ports], **more}


def test_a_config_and_its_topology_disagreeing():
    config = parse_config({"vms": [vm("rA", 1, [1, 2, 3], trunk={"port": 99}),
                                   vm("rB", 2, [1], trunk={"port": 100}),
                                   vm("rX", 9, [1])]}, "cfg.yaml")
    found = Findings()
    compare_lab(found, config, parse_topology(TOPOLOGY, "topo.yaml"))
    assert fields(found.errors) == {
        "cfg.yaml: rfvs.dpid": ["0x7266 is also the datapath id of switch rfvs (topo.yaml switches[3].dpid)"],
        "cfg.yaml: rfvs.bridge": ["'rfvs' is also the name of a switch (topo.yaml switches[3].name)"],
        "cfg.yaml: vms[0].interfaces[2].port": [
            "port 3 of switch sA is on no link of topo.yaml (the links of sA end at: sA:1, sA:2)"],
        "cfg.yaml: vms[0].trunk.port": ["99 is not the trunk port of switch sA: topo.yaml switches[0].trunk is 100"],
        "cfg.yaml: vms[1].trunk.port": ["switch sB has no trunk in topo.yaml (switches[1]: add trunk: 100)"],
        "cfg.yaml: vms[2].dpid": [
            "0x9 is no switch of topo.yaml (its switches: sA 0x1, sB 0x2, sC 0x3, rfvs 0x7266)"],
    }
    assert fields(found.warnings) == {
        "topo.yaml: links[2].ends[0]": ["port 2 of sB is mirrored by no interface of VM rB (cfg.yaml vms[1])"],
        "topo.yaml: switches[2].dpid": ["switch sC (0x3) is mirrored by no VM of cfg.yaml"],
        "topo.yaml: switches[3].dpid": ["switch rfvs (0x7266) is mirrored by no VM of cfg.yaml"],
    }
    found = Findings()
    compare_lab(found, parse_config({"vms": [vm("rC", 3, [1])]}, "cfg.yaml"),
                parse_topology({**TOPOLOGY, "switches": TOPOLOGY["switches"][:3]}, "topo.yaml"))
    assert fields(found.warnings)["topo.yaml: switches[2].trunk"] == [
        "VM rC (cfg.yaml vms[0]) has no trunk: its slow path goes through the controller and port 100 is unused"]


@pytest.mark.parametrize("document, as_topology, hint", [
    ({"switches": [], "links": []}, False, "this looks like a lab topology: routeflow check --topology f.yaml"),
    ({"links": []}, False, "this looks like a lab topology: routeflow check --topology f.yaml"),
    ({"vms": [], "switches": []}, False, None),
    ({"vms": []}, True, "this looks like a routeflow config: routeflow check f.yaml"),
    ({"switches": []}, True, None),
    (["switches"], False, None),
    (None, True, None),
])  # fmt: skip
def test_a_file_of_the_other_kind_gets_a_hint(document, as_topology, hint):
    assert kind_hint(document, "f.yaml", as_topology) == hint


ENGINE_CONFIG = "router id 10.0.0.1;\nprotocol device {}\nprotocol kernel { ipv4 { export all; } }\n"


def test_bird_errors_are_mapped_to_engine_config_lines():
    conf = bird_conf("rA", ENGINE_CONFIG, Path("/tmp/x/rA"))
    first = first_line(conf, ENGINE_CONFIG)
    assert conf.splitlines()[first - 1] == "router id 10.0.0.1;"
    output = f"bird: /tmp/x/rA/bird.conf:{first + 2}:40 syntax error, unexpected '}}', expecting ';'\n"
    assert bird_errors(output, "/tmp/x/rA/bird.conf", conf, ENGINE_CONFIG) == [
        "line 3, column 40: syntax error, unexpected '}', expecting ';'"]
    # A line routeflow writes, a file the config includes, a message without a place.
    output = ("bird: /tmp/x/rA/bird.conf:1:5 oops\nbird: /etc/bird/extra.conf:7:1 syntax error\n"
              "bird: Cannot open configuration file /tmp/x/rA/bird.conf: Permission denied\n")
    assert bird_errors(output, "/tmp/x/rA/bird.conf", conf, ENGINE_CONFIG) == [
        "line 1 of the bird.conf routeflow writes, column 5: oops",
        "/etc/bird/extra.conf line 7, column 1: syntax error",
        "Cannot open configuration file bird.conf: Permission denied",
    ]
    assert bird_errors("", "/tmp/x/rA/bird.conf", conf, ENGINE_CONFIG) == ["rejected, without a message"]


def test_vtysh_errors_are_mapped_to_engine_config_lines():
    engine_config = "router ospf\n netwrk 10.0.0.0/8 area 0\n"
    conf = frr_conf("rA", engine_config, Path("/tmp/x/rA"))
    first = first_line(conf, engine_config)
    assert conf.splitlines()[first] == " netwrk 10.0.0.0/8 area 0"
    output = (f"% Can't open configuration file /etc/frr/vtysh.conf due to 'Permission denied'.\n"
              f"line {first + 1}: % Unknown command[41]:  netwrk 10.0.0.0/8 area 0\n")
    assert vtysh_errors(output, conf, engine_config) == ["line 2: % Unknown command: netwrk 10.0.0.0/8 area 0"]
    assert vtysh_errors("% something else\n", conf, engine_config) == ["% something else"]


def test_engine_versions():
    assert bird_version("BIRD version 2.0.12\n") == (2, "2.0.12")
    assert bird_version("BIRD version 3.0.1\n") == (3, "3.0.1")
    assert bird_version("BIRD version 1.6.8\n") == (1, "1.6.8")
    assert bird_version("") is None
    assert frr_version("Integrated shell for FRR (version 8.4.4). \n") == "8.4.4"
    assert frr_version("usage") is None
