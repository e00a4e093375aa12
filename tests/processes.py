"""Commands and child processes for the integration tests."""

from __future__ import annotations

import signal
import subprocess


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured as text."""
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10) -> int:
    """SIGTERM ``proc`` (SIGKILL once ``grace`` seconds pass) and return its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def output(*argv: str) -> str:
    """A command's standard output; a non-zero exit fails the test."""
    return sh(*argv).stdout
