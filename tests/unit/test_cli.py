"""The ``routeflow`` command keeps the README's promises at its edges: exit codes,
no tracebacks for bad arguments, a closed pipe is not a server error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest

from routeflow.cli import EXIT_UNREACHABLE, EXIT_USAGE, main
from routeflow.protocol import auth


@pytest.mark.parametrize("argv", [
    ["status", "--server", "foo"],
    ["verify", "--server", "tcp:host"],
    ["controller", "--server", "unix:"],
    ["client", "--vm", "rA", "--server", "foo"],
    ["client", "--vm", "rA", "--audit-interval", "0.5"],
    ["status", "--server", "unix:/a,tls:127.0.0.1:1"],
    ["server", "c.yaml", "--listen", "unix:/a,unix:/b"],
    ["etcd", "start", "--members", "2"],
])  # fmt: skip
def test_a_bad_argument_is_a_usage_error_with_its_reason(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_a_mistyped_demo_is_refused_before_anything_is_touched(capsys, monkeypatch):
    from routeflow import harness

    monkeypatch.setattr(harness, "stop_kept", lambda: pytest.fail("stopped a kept demo"))
    with pytest.raises(SystemExit) as exc:
        main(["demo", "rftest9"])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no example 'rftest9'; the examples are: " in err and "rftest2-bird" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("routeflow ")


def test_verify_wait_waits_for_the_server_too(tmp_path):
    """A server that hangs up on every hello is unreachable: verify --wait asks it again
    and again until the time is up (the listener counts the attempts), then says so."""
    path = tmp_path / "rf.sock"
    auth.ensure_keys(tmp_path / "keys", ["operator"])
    attempts = 0

    def hang_up(listener: socket.socket) -> None:
        nonlocal attempts
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            attempts += 1
            conn.close()

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        threading.Thread(target=hang_up, args=(listener,), daemon=True).start()
        argv = [sys.executable, "-m", "routeflow", "verify", "--wait", "1.5", "--server", f"unix:{path}",
                "--keys", str(tmp_path / "keys")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        listener.shutdown(socket.SHUT_RDWR)
    assert done.returncode == EXIT_UNREACHABLE and "cannot reach the server" in done.stderr
    assert attempts >= 2  # it kept trying, not gave up at once


def test_pki_init_makes_what_a_config_needs_once_and_list_shows_it(tmp_path, capsys):
    config = tmp_path / "routeflow.yaml"
    config.write_text("vms:\n  - {name: rA, dpid: 1, engine: none, interfaces: [{name: eth1, port: 1}]}\n")
    keys = tmp_path / "keys"
    assert main(["pki", "list", "--keys", str(keys)]) == 1  # nothing yet: says how to make it
    assert "routeflow pki init CONFIG" in capsys.readouterr().out
    assert main(["pki", "init", str(config), "--keys", str(keys)]) == 0
    first = capsys.readouterr().out
    assert {line.split()[0] for line in first.splitlines()[1:]} == {
        "ca", "server", "controller", "operator", "switch", "client-rA", "switch-0000000000000001"}
    assert all(line.endswith("made now") for line in first.splitlines()[1:])
    assert main(["pki", "init", str(config), "--keys", str(keys), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert len(again["credentials"]) == 7 and not any(c["made_now"] for c in again["credentials"])


def test_pki_init_names_a_bad_config(tmp_path, capsys):
    config = tmp_path / "routeflow.yaml"
    config.write_text("vms: 3\n")
    assert main(["pki", "init", str(config), "--keys", str(tmp_path / "keys")]) == EXIT_USAGE
    assert str(config) in capsys.readouterr().err
    assert not (tmp_path / "keys").exists()


def test_the_examples_are_package_data_so_an_installed_routeflow_has_them():
    import tomllib
    from pathlib import Path

    from routeflow import harness

    root = Path(__file__).resolve().parents[2]
    package = Path(harness.__file__).parent
    assert harness.EXAMPLES.parent == package and harness.EXAMPLES.resolve() == root / "examples"
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["routeflow"]
    shipped = [p for p in harness.EXAMPLES.rglob("*") if p.is_file()]
    assert shipped and all(any(p.relative_to(package).match(pattern) for pattern in patterns) for p in shipped)


def test_a_server_pair_is_named_on_the_command_line():
    from routeflow.cli import build_parser

    args = build_parser().parse_args(["server", "c.yaml", "--listen", "unix:/run/b.sock", "--id", "second"])
    assert (args.listen, args.id) == (["unix:/run/b.sock"], "second")
    args = build_parser().parse_args(["status", "--server", "unix:/run/a.sock,unix:/run/b.sock"])
    assert args.server == "unix:/run/a.sock,unix:/run/b.sock"


def test_status_tries_each_server_of_a_pair(tmp_path, capsys):
    assert main(["status", "--server", f"unix:{tmp_path}/a.sock,unix:{tmp_path}/b.sock", "--keys",
                 str(tmp_path)]) == EXIT_UNREACHABLE
    assert "cannot reach the server" in capsys.readouterr().err
