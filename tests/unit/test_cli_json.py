"""``--json`` is JSON on stdout whatever happens, errors included; ``--log-json`` makes
every log line a JSON object."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from routeflow.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, JsonLogFormatter, main
from routeflow.harness import EXAMPLES
from routeflow.lab import network
from routeflow.lab.topology import load_topology
from routeflow.operator_client import OperatorClient
from routeflow.protocol.messages import VerifyReply

TOPOLOGY = EXAMPLES / "rftest1" / "topology.yaml"


def json_run(argv: list[str], capsys) -> tuple[int, dict]:
    """``main(argv)``'s exit code and its stdout parsed; nothing may go to stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert err == ""
    return code, json.loads(out)


@pytest.mark.parametrize("argv, code, error", [
    (["status", "--json", "--server", "unix:{tmp}/none.sock"], EXIT_UNREACHABLE,
     "cannot reach the server at unix:{tmp}/none.sock: [Errno 2] No such file or directory"),
    (["verify", "--json", "--server", "unix:{tmp}/none.sock"], EXIT_UNREACHABLE,
     "cannot reach the server at unix:{tmp}/none.sock: [Errno 2] No such file or directory"),
    (["status", "--json", "--server", "unix:{tmp}/s", "--keys", "{tmp}/afile"], EXIT_UNREACHABLE,
     "cannot reach the server at unix:{tmp}/s: cannot read the key of operator ({tmp}/afile/operator.key): "
     "Not a directory"),
    (["lab", "link", "A-B", "down", "--json", "--state", "{tmp}/lab.json"], EXIT_FAILED,
     "no lab is up (no state file {tmp}/lab.json)"),
    (["status", "--json", "--server", "nowhere"], EXIT_USAGE,
     "routeflow status: argument --server: bad address 'nowhere': "
     "expected unix:PATH, tcp:HOST:PORT or tls:HOST:PORT"),
    (["pki", "init", "--json"], EXIT_USAGE, "routeflow pki init: the following arguments are required: config"),
])  # fmt: skip
def test_an_error_is_json_with_its_exit_code(argv, code, error, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    got, document = json_run([arg.format(tmp=tmp_path) for arg in argv], capsys)
    assert got == code
    assert document == {"error": error.format(tmp=tmp_path), "exit_code": code}


def test_a_config_error_lists_each_problem_as_check_does(tmp_path, capsys):
    config = tmp_path / "routeflow.yaml"
    config.write_text("vms: 3\n")
    code, document = json_run(["pki", "init", str(config), "--keys", str(tmp_path / "keys"), "--json"], capsys)
    assert code == EXIT_USAGE and document["exit_code"] == EXIT_USAGE
    assert document["errors"] == [{"file": str(config), "field": "vms", "reason": "must be a list, not int"}]
    assert document["error"] == f"{config}: vms: must be a list, not int"


def test_json_after_the_double_dash_is_the_shells_not_ours(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["vm", "rA", "shell", "--server", "nowhere", "--", "show", "--json"])
    assert exc.value.code == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and "bad address 'nowhere'" in err


def test_verify_json(monkeypatch, capsys):
    replies = iter([VerifyReply(1, True, (), {"datapaths": 2, "flows": 9, "routes": 4}),
                    VerifyReply(2, False, ("datapath 0x1: lacks a flow",), {"datapaths": 2})])
    monkeypatch.setattr(OperatorClient, "verify", lambda self, wait: next(replies))
    assert json_run(["verify", "--json"], capsys) == (
        EXIT_OK, {"ok": True, "differences": [], "checked": {"datapaths": 2, "flows": 9, "routes": 4}})
    code, document = json_run(["verify", "--json"], capsys)
    assert code == EXIT_FAILED and document["differences"] == ["datapath 0x1: lacks a flow"]


def test_lab_json_says_what_was_made_and_the_link_state(tmp_path, monkeypatch, capsys):
    topology = load_topology(TOPOLOGY)
    state = tmp_path / "lab.json"
    calls = []
    monkeypatch.setattr(network, "lab_up", lambda path, state_path: calls.append(("up", path, state_path)) or topology)
    monkeypatch.setattr(network, "set_link", lambda spec, word, state_path: topology.find_link(spec))
    monkeypatch.setattr(network, "lab_down", lambda state_path: True)

    code, document = json_run(["lab", "up", str(TOPOLOGY), "--state", str(state), "--json"], capsys)
    assert code == EXIT_OK and calls == [("up", str(TOPOLOGY), state)]
    assert document == {
        "state_file": str(state),
        "switches": [{"name": "s1", "dpid": "0x1"}],
        "hosts": [{"name": "b1", "addresses": ["172.31.1.2/24"]}, {"name": "b2", "addresses": ["172.31.2.2/24"]}],
        "routers": [],
        "links": [{"name": "s1-b1", "ends": ["s1:1", "b1"]}, {"name": "s1-b2", "ends": ["s1:2", "b2"]}]}

    link = topology.links[0]
    code, document = json_run(["lab", "link", link.name, "silent", "--state", str(state), "--json"], capsys)
    assert (code, document) == (EXIT_OK, {"state_file": str(state), "link": link.name,
                                          "ends": [str(link.a), str(link.b)], "state": "silent"})
    assert json_run(["lab", "down", "--state", str(state), "--json"], capsys) == (
        EXIT_OK, {"state_file": str(state), "removed": True})
    assert main(["lab", "down", "--state", str(state)]) == EXIT_OK
    assert capsys.readouterr().out == "lab is down\n"


# --- --log-json -----------------------------------------------------------------------------


def record(msg: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("routeflow.lab", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_a_log_line_is_one_json_object():
    line = JsonLogFormatter().format(record("link %s %s — ok", "sA-sB", "down"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {"level": "WARNING", "logger": "routeflow.lab", "message": "link sA-sB down — ok"}


def test_a_log_line_carries_its_exception():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        line = JsonLogFormatter().format(record("failed", exc_info=sys.exc_info()))
    entry = json.loads(line)
    assert entry["message"] == "failed"
    assert entry["exception"].startswith("Traceback") and entry["exception"].endswith("ValueError: bad\nthing")


def test_log_json_on_the_command_line(tmp_path):
    state = tmp_path / "lab.json"
    state.write_text(json.dumps({"meta": {}, "resources": []}))  # a lab with nothing left in it
    done = subprocess.run([sys.executable, "-m", "routeflow", "-v", "--log-json", "lab", "down", "--state",
                           str(state)], capture_output=True, text=True, timeout=30)
    assert done.returncode == EXIT_OK and done.stdout == "lab is down\n"
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert {"level": "INFO", "logger": "routeflow.lab", "message": "lab down"} in [
        {k: v for k, v in e.items() if k != "time"} for e in entries]
    assert not Path(state).exists()
