"""FRR inside a VM: its config file, its daemons' command lines, and vtysh.

Each VM runs its own FRR instance: ``zebra`` plus the configured daemons,
all reading one ``frr.conf`` in the VM's run directory, where they also
keep their pidfiles, zebra's API socket and their vty sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from routeflow.vnet import query

FRR_DIR = Path("/usr/lib/frr")
#: FRR's own reload (Debian's frr-pythontools): applies the difference between the running
#: configuration and a file, lines the file no longer has included, with no daemon restarted.
FRR_RELOAD = FRR_DIR / "frr-reload.py"
FRR_USER = "frr"
#: Root of the per-VM run directories, ``<root>/<vm>/``.
DEFAULT_RUN_ROOT = Path("/run/routeflow/vms")
#: Seconds a restarted zebra keeps the routes its predecessor put in the kernel
#: (``zebra -K``) while the protocol daemons give it theirs again: a zebra that
#: dies costs no forwarding. Routes not given again by then are removed.
ZEBRA_RETAIN = 30


def frr_conf(name: str, engine_config: str, run_dir: Path) -> str:
    """The ``frr.conf`` of instance ``name`` (a VM or a lab router): its hostname,
    a log file, then its ``engine_config``."""
    lines = [
        f"! frr.conf of {name}, written by routeflow from {name}'s engine_config",
        f"hostname {name}",
        f"log file {run_dir / 'frr.log'}",
        "!",
        engine_config.rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def daemon_argv(daemon: str, instance: str, run_dir: Path) -> tuple[str, ...]:
    """The command starting FRR ``daemon`` (``zebra``, ``ospfd``...) of one instance.

    ``-d`` daemonizes: the command returns once the daemon runs and has
    written its pidfile. ``-N`` names the instance (its default paths), and
    every path is then given explicitly so that nothing is shared with
    another instance or the system's FRR.
    """
    retain = ("-K", str(ZEBRA_RETAIN)) if daemon == "zebra" else ()
    return (
        str(FRR_DIR / daemon), "-d",
        "-N", instance,
        "-f", str(run_dir / "frr.conf"),
        "-i", str(pidfile(daemon, run_dir)),
        "-z", str(zserv_socket(run_dir)),
        "--vty_socket", str(run_dir),
        *retain,
    )


def pidfile(daemon: str, run_dir: Path) -> Path:
    return run_dir / f"{daemon}.pid"


def zserv_socket(run_dir: Path) -> Path:
    """zebra's API socket, which the other daemons connect to."""
    return run_dir / "zserv.api"


def vtysh(vm: str, command: str | Sequence[str], run_root: Path = DEFAULT_RUN_ROOT, timeout: float = 10.0) -> str:
    """Run vtysh ``command`` (``show ip ospf neighbor``) against ``vm``'s FRR; its output.

    A sequence of commands runs in one vtysh session, in order (``configure
    terminal``, ``router bgp 65001``, ``no network ...``).
    """
    commands = [command] if isinstance(command, str) else list(command)
    return query(vtysh_argv(run_root / vm, commands), f"vtysh {command!r} on {vm}", timeout)


def reload_argv(run_dir: Path, conf_file: Path) -> list[str]:
    """FRR's reload (:data:`FRR_RELOAD`) of the instance of ``run_dir`` to ``conf_file``, logging
    to its output; ``conf_file`` is the instance's own, so nothing else is written."""
    return [str(FRR_RELOAD), "--reload", "--stdout", "--bindir", "/usr/bin", "--confdir", str(run_dir),
            "--rundir", str(run_dir), "--vty_socket", str(run_dir), str(conf_file)]


def vtysh_argv(run_dir: Path, commands: Sequence[str] = ()) -> list[str]:
    """vtysh on the instance of ``run_dir`` (where every daemon has its vty): interactive,
    or running ``commands`` in one session, in order."""
    argv = ["vtysh", "--vty_socket", str(run_dir)]
    for line in commands:
        argv += ["-c", line]
    return argv
