"""The systemd units in contrib/systemd restart the server and the controller and
leave the VMs running across a server restart."""

import configparser
import shlex
from pathlib import Path

import pytest

from routeflow.cli import build_parser

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string((UNITS / name).read_text())
    return unit


@pytest.mark.parametrize("name, verb", [("routeflow-server.service", "server"),
                                        ("routeflow-controller.service", "controller"),
                                        ("routeflow-controller@.service", "controller")])
def test_each_unit_runs_routeflow_and_restarts_it_a_second_after_it_dies(name, verb):
    service = _unit(name)["Service"]
    argv = shlex.split(service["ExecStart"].replace("%i", "6654"))  # a template's instance
    assert Path(argv[0]).name == "routeflow" and argv[1] == verb
    build_parser().parse_args(argv[1:])  # exits (SystemExit) on an option the CLI does not have
    # kill -9 is a failure; a stop asked for (exit 0) is not restarted.
    assert service["Restart"] == "on-failure" and service["RestartSec"] == "1"


def test_the_server_unit_leaves_the_vms_for_the_next_server_to_adopt():
    service = _unit("routeflow-server.service")["Service"]
    # Only the server is signalled (not the engines and clients in its cgroup), and with
    # the signal that makes it exit leaving its VMs (server/main.py).
    assert service["KillMode"] == "process"
    assert service["KillSignal"] == "SIGUSR1"


def test_the_controller_template_listens_on_its_instance_port_under_its_own_name():
    args = build_parser().parse_args(shlex.split(
        _unit("routeflow-controller@.service")["Service"]["ExecStart"].replace("%i", "6654"))[1:])
    assert args.listen_port == 6654 and args.instance == "controller-6654"
