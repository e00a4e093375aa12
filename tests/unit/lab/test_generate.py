"""Generated partial meshes: connected, within their degree, numbered by the documented
rules, the same for the same seed, and a valid config for a valid lab."""

import json
import math

import pytest
import yaml

from routeflow.check.semantics import Findings, compare_lab
from routeflow.config.loader import parse_config
from routeflow.lab.generate import MAX_SWITCHES, TRUNK, config, mesh, topology, write
from routeflow.lab.topology import parse_topology


def connected_without(m, cut=None) -> bool:
    links = [link for link in m.links if link != cut]
    seen, todo = {1}, [1]
    while todo:
        node = todo.pop()
        for a, b in links:
            for x, y in ((a, b), (b, a)):
                if x == node and y not in seen:
                    seen.add(y)
                    todo.append(y)
    return len(seen) == m.switches


@pytest.mark.parametrize("switches,degree", [(3, 2), (4, 3), (16, 3), (64, 3), (64, 4.5), (200, 3)])
def test_a_mesh_is_connected_survives_any_one_cut_and_has_its_degree(switches, degree):
    m = mesh(switches, degree)
    assert len(set(m.links)) == len(m.links) and all(a < b for a, b in m.links)
    assert all(connected_without(m, cut) for cut in m.links)  # the ring: no link is a bridge
    if switches > 2:
        assert abs(2 * len(m.links) / switches - degree) <= 0.1 * degree
        assert max(m.degree(i) for i in range(1, switches + 1)) <= max(3, math.ceil(degree))


def test_the_same_seed_makes_the_same_mesh_and_another_seed_another():
    assert mesh(32, 3, seed=7) == mesh(32, 3, seed=7)
    assert mesh(32, 3, seed=7) != mesh(32, 3, seed=8)


def test_ports_addresses_and_names_follow_the_documented_numbering():
    m = mesh(300, 3)
    topo = parse_topology(topology(m), "topology.yaml")
    cfg = parse_config(config(m), "routeflow.yaml")
    k, (a, b) = next((k, link) for k, link in enumerate(m.links) if link[0] > 256)
    vm_a, vm_b = cfg.vm(f"r{a}"), cfg.vm(f"r{b}")
    nic_a = vm_a.interface(f"eth{m.port(a, k)}")
    nic_b = vm_b.interface(f"eth{m.port(b, k)}")
    assert nic_a.addresses == (f"10.{k // 256}.{k % 256}.1/24",) and nic_b.addresses == (f"10.{k // 256}.{k % 256}.2/24",)
    assert nic_a.mac == f"02:52:{a // 256:02x}:{a % 256:02x}:00:{m.port(a, k):02x}"
    assert vm_a.dpid == a and vm_a.trunk.port == TRUNK and vm_a.interface("eth1").port == 1
    host = topo.host(f"h{a}")
    assert str(host.addresses[0]) == f"172.{16 + a // 256}.{a % 256}.100/24" and str(host.gateway).endswith(".1")
    assert sorted(m.port(a, j) for j, link in enumerate(m.links) if a in link) == list(range(2, 2 + m.degree(a)))


def test_the_config_matches_its_lab(tmp_path):
    write(tmp_path, 24, 3.5, seed=3)
    topo = parse_topology(yaml.safe_load((tmp_path / "topology.yaml").read_text()), "topology.yaml")
    cfg = parse_config(yaml.safe_load((tmp_path / "routeflow.yaml").read_text()), "routeflow.yaml")
    found = Findings()
    compare_lab(found, cfg, topo)
    assert found.errors == [] and found.warnings == []
    assert (tmp_path / "topology.yaml").read_text().startswith("# generated: routeflow lab generate --switches 24")


@pytest.mark.parametrize("switches,degree,reason", [
    (2, 2, "--switches must be 3 to"), (MAX_SWITCHES + 1, 3, "--switches must be 3 to"),
    (3, 5, "--degree must be 2 to 2 for 3 switches"), (10, 1.5, "--degree must be 2 to 9"),
])
def test_impossible_arguments_are_refused_with_the_reason(switches, degree, reason):
    with pytest.raises(ValueError, match=reason):
        mesh(switches, degree)


def test_the_command_writes_both_files_or_says_why_not(tmp_path, capsys):
    from routeflow.cli import main

    assert main(["lab", "generate", str(tmp_path / "m"), "--switches", "5", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["switches"] == 5 and document["links"] == len(mesh(5, 3).links)
    assert (tmp_path / "m" / "topology.yaml").is_file() and (tmp_path / "m" / "routeflow.yaml").is_file()
    assert main(["lab", "generate", str(tmp_path / "n"), "--switches", "1"]) == 2
    assert "--switches must be 3 to" in capsys.readouterr().err
