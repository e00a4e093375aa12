"""The ``routeflow`` command on a running rftest2, FRR and BIRD (two bring-ups): a VM's
routing shell, status and verify as checks that pass, and the lab's JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from routeflow.cli import EXIT_FAILED, EXIT_OK
from routeflow.harness import Stack, running

pytestmark = pytest.mark.integration

#: The routing shell's command that shows rA's OSPF at work, and how its output says so.
SHOWS = {
    "frr": ("show ip ospf neighbor", r"^10\.255\.0\.{}\s.*\bFull/"),
    "bird": ("show protocols", r"^ospf{}\s+OSPF\s+master\d\s+up\s.*Running"),
}


@pytest.fixture(scope="module", params=["rftest2", "rftest2-bird"])
def stack(request, tmp_path_factory):
    with running(request.param, tmp_path_factory.mktemp(request.param), lambda s: s.all_pairs_ok()) as started:
        yield started


def routeflow(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routeflow", *argv], capture_output=True, text=True,
                          input=stdin, timeout=60)


def engine(stack: Stack) -> str:
    return stack.config.vm("rA").engine


def shows_ospf_at_work(stack: Stack, output: str) -> bool:
    _, pattern = SHOWS[engine(stack)]
    # FRR: rA's three neighbours (rB, rC, rD), each Full; BIRD: its OSPFv2 and OSPFv3 running.
    expected = ("2", "3", "4") if engine(stack) == "frr" else ("1", "6")
    return all(re.search(pattern.format(n), output, re.M) for n in expected)


@pytest.mark.parametrize("config", [True, False], ids=["engine from --config", "engine from the server"])
def test_one_command_in_a_vms_routing_shell(stack, config):
    command, _ = SHOWS[engine(stack)]
    where = ["--config", str(stack.config_path)] if config else []
    done = routeflow("vm", "rA", "shell", *where, "--", *command.split())
    assert done.returncode == EXIT_OK, done.stderr
    assert shows_ospf_at_work(stack, done.stdout), done.stdout


def test_the_shells_exit_code_is_routeflows(stack):
    done = routeflow("vm", "rA", "shell", "--", "show", "no-such-thing")
    assert done.returncode != EXIT_OK and "Traceback" not in done.stderr


def test_the_interactive_shell_reads_its_commands(stack):
    command, _ = SHOWS[engine(stack)]
    done = routeflow("vm", "rA", "shell", stdin=f"{command}\n")
    assert done.returncode == EXIT_OK, done.stderr
    assert shows_ospf_at_work(stack, done.stdout), done.stdout


def test_a_vm_the_server_does_not_run_is_one_line(stack):
    done = routeflow("vm", "rZ", "shell", "--", "show", "version")
    assert done.returncode == EXIT_FAILED
    assert done.stderr == "routeflow: no VM 'rZ' in the server at unix:/run/routeflow/server.sock " \
                          "(its VMs: rA, rB, rC, rD)\n"


def test_status_and_verify_pass_on_a_converged_network(stack):
    done = routeflow("status")
    assert (done.returncode, done.stderr) == (EXIT_OK, ""), done.stdout
    done = routeflow("status", "--json")
    assert done.returncode == EXIT_OK and json.loads(done.stdout)["problems"] == []
    done = routeflow("verify")
    assert done.returncode == EXIT_OK and done.stdout.startswith("verify: clean"), done.stdout


def test_lab_link_json_on_the_real_lab(stack):
    for state in ("down", "up"):
        done = routeflow("lab", "link", "A-B", state, "--json")
        assert done.returncode == EXIT_OK, done.stderr
        assert json.loads(done.stdout) == {"link": "A-B", "ends": ["sA:3", "sB:2"], "state": state,
                                           "state_file": str(stack.lab_state)}
    done = routeflow("lab", "link", "Z-Z", "down", "--json")
    assert done.returncode == EXIT_FAILED
    assert json.loads(done.stdout) == {"error": "no link named 'Z-Z' or with endpoint 'Z-Z'", "exit_code": 1}
    stack.wait_verify_clean(timeout=60)  # the network is whole again for whoever comes next
