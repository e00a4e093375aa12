"""Commands and child processes for the integration tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


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


def start_controller(server: str, of_port: int, log: Path) -> subprocess.Popen[bytes]:
    """The RF-Controller for ``server`` on OpenFlow port ``of_port``, logging at debug level to ``log``."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,"
        " format='%(asctime)s %(name)s %(levelname)s %(message)s')\n"
        "from routeflow.controller.main import run\n"
        f"run({server!r}, of_port={of_port})\n"
    )
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
