"""The ``routeflow`` command keeps the README's promises at its edges: exit codes,
no tracebacks for bad arguments, a closed pipe is not a server error."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from routeflow.cli import EXIT_UNREACHABLE, EXIT_USAGE, main


@pytest.mark.parametrize("argv", [
    ["status", "--server", "foo"],
    ["verify", "--server", "tcp:host"],
    ["controller", "--server", "unix:"],
    ["client", "--vm", "rA", "--server", "foo"],
    ["client", "--vm", "rA", "--audit-interval", "0.5"],
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
    argv = [sys.executable, "-m", "routeflow", "verify", "--wait", "1.5", "--server", f"unix:{tmp_path}/none.sock"]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == EXIT_UNREACHABLE and "cannot reach the server" in done.stderr
    assert time.monotonic() - started >= 1.5  # it kept trying, not gave up at once
