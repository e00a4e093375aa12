"""BIRD 2 inside a VM (or a lab router): its config file, its command line, and birdc.

One ``bird`` process per instance, reading ``bird.conf`` from the instance's
run directory, where it also keeps its pidfile and control socket. BIRD
writes the kernel FIB itself (its ``kernel`` protocol), so the RF-Client
needs nothing BIRD-specific: the user's ``engine_config`` must have
``protocol device`` and a ``protocol kernel`` that exports its routes.
"""

from __future__ import annotations

from pathlib import Path

from routeflow.vnet import query
from routeflow.vnet.frr import DEFAULT_RUN_ROOT

BIRD = Path("/usr/sbin/bird")
BIRDC = "birdc"
CONF = "bird.conf"


def bird_conf(name: str, engine_config: str, run_dir: Path) -> str:
    """The ``bird.conf`` of instance ``name``: a log file, then its ``engine_config``.

    Nothing else is added: ``router id`` and every protocol come from the
    user's configuration.
    """
    lines = [
        f"# bird.conf of {name}, written by routeflow from {name}'s engine_config",
        f'log "{run_dir / "bird.log"}" all;',
        "",
        engine_config.rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def daemon_argv(run_dir: Path) -> tuple[str, ...]:
    """The command starting BIRD; it daemonizes, then writes its pidfile."""
    return (str(BIRD), "-c", str(run_dir / CONF), "-s", str(control_socket(run_dir)),
            "-P", str(pidfile(run_dir)))


def pidfile(run_dir: Path) -> Path:
    return run_dir / "bird.pid"


def control_socket(run_dir: Path) -> Path:
    """BIRD's control socket, which birdc talks to; open once BIRD is ready."""
    return run_dir / "bird.ctl"


def birdc_argv(run_dir: Path, command: str = "") -> list[str]:
    """birdc on the instance of ``run_dir``: interactive, or running ``command``."""
    return [BIRDC, "-s", str(control_socket(run_dir)), *([command] if command else [])]


def birdc(name: str, command: str, run_root: Path = DEFAULT_RUN_ROOT, timeout: float = 10.0) -> str:
    """Run one birdc ``command`` (``show protocols``) against instance ``name``; its output."""
    return query(birdc_argv(run_root / name, command), f"birdc {command!r} on {name}", timeout)
