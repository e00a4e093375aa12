"""``routeflow check``: every error as ``FILE: FIELD: REASON``, warnings that do not fail it,
a config against its lab topology, ``--json``, and the README's exit codes (0 valid, 2 invalid).

The engines' own parsers are replaced (tests/integration/test_check.py runs the real ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routeflow.check import engines
from routeflow.cli import EXIT_OK, EXIT_USAGE, main

CONFIG = """\
vms:
  - name: rA
    dpid: 0x1
    engine: frr
    daemons: [ospfd]
    trunk: {port: 100}
    interfaces:
      - {name: eth1, port: 1, addresses: [172.31.1.1/24]}
    engine_config: |
      router ospf
       network 172.31.1.0/24 area 0
"""
TOPOLOGY = """\
switches:
  - {name: sA, dpid: 0x1, trunk: 100}
hosts:
  - {name: h1, addresses: [172.31.1.100/24], gateway: 172.31.1.1}
links:
  - {ends: ["sA:1", h1]}
"""


@pytest.fixture(autouse=True)
def engine_parsers(monkeypatch):
    """The engines' parsers, replaced: each call is recorded and adds what ``said`` holds."""
    calls: list[tuple[str, str, str]] = []
    said: list[tuple[str, str]] = []

    def check_engine_config(found, file, path, engine, name, engine_config, daemons):
        calls.append((file, path, engine))
        for kind, reason in said:
            getattr(found, kind)(file, f"{path}.engine_config", reason)

    monkeypatch.setattr(engines, "check_engine_config", check_engine_config)
    return calls, said


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_valid_config_and_its_lab(tmp_path, capsys, engine_parsers):
    config, topology = write(tmp_path, "cfg.yaml", CONFIG), write(tmp_path, "topo.yaml", TOPOLOGY)
    assert run(capsys, config) == (EXIT_OK, f"{config}: valid config (1 VMs)\n", "")
    code, out, err = run(capsys, config, "--lab", topology)
    assert (code, err) == (EXIT_OK, "")
    assert out.splitlines() == [f"{config}: valid config (1 VMs)",
                                f"{topology}: valid topology (1 switches, 1 hosts, 0 routers), "
                                f"and the VMs of {config} match it"]
    calls, _ = engine_parsers
    assert calls == [(config, "vms[0]", "frr")] * 2


def test_every_error_names_its_file_and_field(tmp_path, capsys):
    config = write(tmp_path, "cfg.yaml", CONFIG.replace("addresses: [172.31.1.1/24]", "adresses: [172.31.1.0/24]")
                   .replace("trunk: {port: 100}", "trunk: 100"))
    code, out, err = run(capsys, config)
    assert (code, out) == (EXIT_USAGE, "")
    assert err.splitlines() == [
        f"{config}: vms[0].interfaces[0].adresses: unknown key 'adresses'; did you mean 'addresses'?",
        f"{config}: vms[0].trunk: must be a mapping like {{port: 100}}, not 100",
    ]
    config = write(tmp_path, "cfg.yaml", CONFIG.replace("router ospf", "router bgp 1"))
    code, out, err = run(capsys, config)
    assert (code, out) == (EXIT_USAGE, "")
    assert err.splitlines() == [
        f"{config}: vms[0].daemons: 'router bgp 1' (engine_config line 1) needs bgpd: add it to daemons",
    ]  # a config that does not load has its errors shown, and nothing of what it would mean


def test_a_config_and_a_lab_that_disagree(tmp_path, capsys):
    config = write(tmp_path, "cfg.yaml", CONFIG.replace("port: 1,", "port: 2,"))
    topology = write(tmp_path, "topo.yaml", TOPOLOGY.replace("trunk: 100", "trunk: 99"))
    code, out, err = run(capsys, config, "--lab", topology)
    assert (code, out) == (EXIT_USAGE, "")
    assert err.splitlines() == [
        f"{config}: vms[0].interfaces[0].port: port 2 of switch sA is on no link of {topology} "
        f"(the links of sA end at: sA:1)",
        f"{config}: vms[0].trunk.port: 100 is not the trunk port of switch sA: {topology} switches[0].trunk is 99",
        f"{topology}: links[0].ends[0]: warning: port 1 of sA is mirrored by no interface of VM rA "
        f"({config} vms[0])",
    ]


def test_warnings_alone_do_not_fail_a_check(tmp_path, capsys, engine_parsers):
    _, said = engine_parsers
    said.append(("warning", "not checked: FRR is not installed (no vtysh)"))
    config = write(tmp_path, "cfg.yaml", CONFIG)
    code, out, err = run(capsys, config)
    assert (code, out) == (EXIT_OK, f"{config}: valid config (1 VMs)\n")
    assert err == f"{config}: vms[0].engine_config: warning: not checked: FRR is not installed (no vtysh)\n"
    said[:] = [("error", "line 2: % Unknown command: netwrk (FRR 8.4.4 vtysh --dryrun)")]
    code, out, err = run(capsys, config)
    assert (code, out) == (EXIT_USAGE, "")
    assert err == f"{config}: vms[0].engine_config: line 2: % Unknown command: netwrk (FRR 8.4.4 vtysh --dryrun)\n"


def test_a_topology_checked_as_a_config_gets_a_hint(tmp_path, capsys, engine_parsers):
    topology = write(tmp_path, "topo.yaml", TOPOLOGY)
    code, _, err = run(capsys, topology)
    assert code == EXIT_USAGE
    assert err.splitlines()[0] == (f"{topology}: (top): this looks like a lab topology: "
                                   f"routeflow check --topology {topology}")
    code, out, err = run(capsys, "--topology", topology)
    assert (code, out, err) == (EXIT_OK, f"{topology}: valid topology (1 switches, 1 hosts, 0 routers)\n", "")
    code, _, err = run(capsys, "--topology", write(tmp_path, "cfg.yaml", CONFIG))
    assert code == EXIT_USAGE and "this looks like a routeflow config: routeflow check " in err.splitlines()[0]


def test_json(tmp_path, capsys):
    config, topology = write(tmp_path, "cfg.yaml", CONFIG), write(tmp_path, "topo.yaml", TOPOLOGY)
    code, out, _ = run(capsys, config, "--lab", topology, "--json")
    document = json.loads(out)
    assert code == EXIT_OK
    assert {k: document[k] for k in ("file", "lab", "valid", "warnings")} == {
        "file": config, "lab": topology, "valid": True, "warnings": []}
    assert document["config"]["vms"][0]["interfaces"][0] == {
        "name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"], "mac": None, "vlan": None}
    assert document["config"]["vms"][0]["trunk"] == {"port": 100, "rfvs_interface": None}
    assert document["topology"]["hosts"][0]["addresses"] == ["172.31.1.100/24"]
    assert document["topology"]["hosts"][0]["gateway"] == "172.31.1.1"
    code, out, _ = run(capsys, write(tmp_path, "bad.yaml", CONFIG.replace("dpid: 0x1", "dpid: zz")), "--json")
    assert code == EXIT_USAGE
    assert json.loads(out) == {
        "file": str(tmp_path / "bad.yaml"), "valid": False, "warnings": [],
        "errors": [{"file": str(tmp_path / "bad.yaml"), "field": "vms[0].dpid",
                    "reason": "'zz' is not a datapath id (1 to 2^64-1, integer or hex)"}]}


def test_unreadable_files_and_bad_usage(tmp_path, capsys):
    code, out, err = run(capsys, str(tmp_path / "absent.yaml"), "--lab", str(tmp_path / "absent2.yaml"))
    assert (code, out) == (EXIT_USAGE, "")
    assert [line.split(": ")[:2] for line in err.splitlines()] == [
        [str(tmp_path / "absent.yaml"), "(file)"], [str(tmp_path / "absent2.yaml"), "(file)"]]
    with pytest.raises(SystemExit) as exc:
        main(["check", "x.yaml", "--topology", "--lab", "y.yaml"])
    assert exc.value.code == EXIT_USAGE and "not allowed with argument" in capsys.readouterr().err
