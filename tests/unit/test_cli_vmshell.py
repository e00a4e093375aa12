"""``routeflow vm NAME shell``: the right shell, on the right VM's sockets, in its namespace."""

from __future__ import annotations

import pytest

from routeflow import vmshell
from routeflow.cli import EXIT_FAILED, main
from routeflow.operator_client import OperatorClient
from routeflow.vnet import VnetError, bird, frr, links
from routeflow.vnet.engine import plan_engine

CONFIG = """\
vms:
  - {name: rA, dpid: 1, engine: frr, daemons: [ospfd], interfaces: [{name: eth1, port: 1}]}
  - {name: rB, dpid: 2, engine: bird, interfaces: [{name: eth1, port: 1}]}
  - {name: rC, dpid: 3, engine: none, interfaces: [{name: eth1, port: 1}]}
"""


@pytest.fixture
def running(tmp_path, monkeypatch):
    """rA (FRR) and rB (BIRD) running under ``tmp_path``: their namespaces and ready sockets."""
    monkeypatch.setattr(links, "netns_exists", lambda name: name in ("rA", "rB"))
    for vm in ("rA", "rB"):
        (tmp_path / vm).mkdir()
    frr.zserv_socket(tmp_path / "rA").touch()
    bird.control_socket(tmp_path / "rB").touch()
    return tmp_path


def test_frr_is_vtysh_on_the_vms_vty_sockets(running):
    netns = ["ip", "netns", "exec", "rA"]
    shell = ["vtysh", "--vty_socket", str(running / "rA")]
    assert vmshell.shell_argv("rA", "frr", (), running) == netns + shell
    assert vmshell.shell_argv("rA", "frr", ("show", "ip", "route"), running) == netns + shell + ["-c", "show ip route"]


def test_bird_is_birdc_on_the_vms_control_socket(running):
    shell = ["ip", "netns", "exec", "rB", "birdc", "-s", str(running / "rB" / "bird.ctl")]
    assert vmshell.shell_argv("rB", "bird", (), running) == shell
    assert vmshell.shell_argv("rB", "bird", ("show", "protocols"), running) == shell + ["show protocols"]


@pytest.mark.parametrize("vm, engine, reason", [
    ("rC", "none", "VM rC runs no routing engine (engine: none): it has no routing shell"),
    ("rD", "frr", "VM rD is not running: no network namespace rD"),
])
def test_no_shell_without_a_running_engine(vm, engine, reason, running):
    with pytest.raises(VnetError) as exc:
        vmshell.shell_argv(vm, engine, (), running)
    assert str(exc.value) == reason


def test_an_engine_that_is_down_is_said_so(running):
    frr.zserv_socket(running / "rA").unlink()
    with pytest.raises(VnetError, match=f"VM rA's frr is not running: no {running}/rA/zserv.api"):
        vmshell.shell_argv("rA", "frr", (), running)


def test_the_engine_comes_from_the_config_or_the_server(tmp_path, monkeypatch):
    config = tmp_path / "routeflow.yaml"
    config.write_text(CONFIG)
    assert [vmshell.engine_of(vm, str(config), "unix:/nowhere") for vm in ("rA", "rB", "rC")] == ["frr", "bird", "none"]
    with pytest.raises(VnetError, match=r"no VM 'rZ' in .*routeflow.yaml \(its VMs: rA, rB, rC\)"):
        vmshell.engine_of("rZ", str(config), "unix:/nowhere")

    monkeypatch.setattr(OperatorClient, "status", lambda self, detail: {"vms": [{"name": "rA", "engine": "bird"}]})
    assert vmshell.engine_of("rA", None, "unix:/s") == "bird"
    with pytest.raises(VnetError, match=r"no VM 'rB' in the server at unix:/s \(its VMs: rA\)"):
        vmshell.engine_of("rB", None, "unix:/s")


def test_the_command_line_opens_the_shell(running, tmp_path, monkeypatch, capsys):
    config = tmp_path / "routeflow.yaml"
    config.write_text(CONFIG)
    # The VM's run directory under tmp_path rather than /run/routeflow/vms.
    monkeypatch.setattr(vmshell, "plan_engine", lambda engine, vm, conf, daemons, root: plan_engine(
        engine, vm, conf, daemons, running))
    opened = []

    def open_shell(argv):
        opened.append(argv)
        raise SystemExit(0)  # what the shell then exits with is routeflow's code

    monkeypatch.setattr(vmshell, "open_shell", open_shell)
    with pytest.raises(SystemExit):
        main(["vm", "rB", "shell", "--config", str(config), "--", "show", "route", "for", "10.0.0.0/8"])
    assert opened == [["ip", "netns", "exec", "rB", "birdc", "-s", str(running / "rB" / "bird.ctl"),
                       "show route for 10.0.0.0/8"]]
    assert main(["vm", "rD", "shell", "--config", str(config)]) == EXIT_FAILED
    assert capsys.readouterr().err == f"routeflow: no VM 'rD' in {config} (its VMs: rA, rB, rC)\n"
