"""A routing engine in a namespace: what to run (pure) and running it.

Shared by the VMs (:mod:`routeflow.vnet.driver`) and the lab's legacy
routers (:mod:`routeflow.lab.network`): :func:`plan_engine` turns an engine
name, its configuration text and daemons into an :class:`EnginePlan` (run
directory, config file, daemon command lines) without touching the system;
:func:`start_engine` writes the config and starts the daemons inside a
namespace, recording each in a :class:`~routeflow.vnet.resources.ResourceLog`
by pidfile first, so teardown finds them even after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from routeflow.config.schema import Engine
from routeflow.private import private_dir, write_private
from routeflow.vnet import VnetError, bird, frr, links
from routeflow.vnet.resources import Resource, ResourceLog, process_record, read_pidfile

log = logging.getLogger("routeflow.vnet")

#: How long a daemon may take to write its pidfile and open its ready socket.
DAEMON_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class DaemonPlan:
    """A routing-engine daemon: its name, command line (run inside the namespace) and pidfile."""

    name: str
    argv: tuple[str, ...]
    pidfile: Path
    #: A socket the daemon opens once it serves its peers (zebra's API socket,
    #: BIRD's control socket); the next daemon starts only after it exists.
    ready: Path | None = None


@dataclass(frozen=True)
class EnginePlan:
    """One engine instance: its files under ``run_dir`` and its daemons in start order."""

    engine: str
    run_dir: Path
    conf_file: Path
    conf: str
    #: The user the run directory and config belong to (FRR drops root), None for root.
    user: str | None
    daemons: tuple[DaemonPlan, ...]


def plan_engine(engine: str, name: str, engine_config: str, daemons: tuple[str, ...],
                run_root: Path) -> EnginePlan | None:
    """The engine instance ``name`` runs under ``run_root/name``; None for engine "none"."""
    run_dir = run_root / name
    if engine == Engine.FRR:
        return EnginePlan(
            engine, run_dir, run_dir / "frr.conf", frr.frr_conf(name, engine_config, run_dir), frr.FRR_USER,
            tuple(DaemonPlan(d, frr.daemon_argv(d, name, run_dir), frr.pidfile(d, run_dir),
                             frr.zserv_socket(run_dir) if d == "zebra" else None)
                  for d in ("zebra", *daemons)))
    if engine == Engine.BIRD:
        return EnginePlan(
            engine, run_dir, run_dir / bird.CONF, bird.bird_conf(name, engine_config, run_dir), None,
            (DaemonPlan("bird", bird.daemon_argv(run_dir), bird.pidfile(run_dir),
                        bird.control_socket(run_dir)),))
    return None


async def start_engine(netns: str, label: str, plan: EnginePlan, record: ResourceLog, owner: str) -> None:
    """Write ``plan``'s config and start its daemons in ``netns``; each is recorded as ``owner``'s.

    ``label`` names the instance in messages (``VM rA``, ``router L1``).

    Returns once every daemon has written its pidfile and opened its ready
    socket; raises VnetError (with the daemon's output) if one does not.
    """
    record.add(Resource("dir", str(plan.run_dir), owner))
    prepare_run_dir(plan)
    for daemon in plan.daemons:
        await start_daemon(netns, label, owner, daemon, plan.run_dir, record)
    log.info("%s: %s running", label, ", ".join(d.name for d in plan.daemons))


async def reload_engine(netns: str, label: str, plan: EnginePlan) -> None:
    """Rewrite ``plan``'s config and have its running daemons take it, none restarted: FRR's
    reload applies the difference (lines added, changed or gone); BIRD reconfigures. Without
    FRR's reload script (no frr-pythontools), ``vtysh -f`` applies the file, which adds and
    changes but removes nothing: said in the log."""
    write_private(plan.conf_file, plan.conf, plan.user)
    if plan.engine == Engine.FRR and frr.FRR_RELOAD.exists():
        argv = frr.reload_argv(plan.run_dir, plan.conf_file)
    elif plan.engine == Engine.FRR:
        log.warning("%s: %s missing: the config is applied with vtysh -f, lines removed stay", label, frr.FRR_RELOAD)
        argv = frr.vtysh_argv(plan.run_dir) + ["-f", str(plan.conf_file)]
    else:
        argv = bird.birdc_argv(plan.run_dir, "configure")
    proc = await asyncio.create_subprocess_exec(*links.netns_argv(netns, argv), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    # birdc says how the reconfiguration went, and exits 0 either way.
    if proc.returncode != 0 or (plan.engine == Engine.BIRD and b"Reconfigur" not in out):
        raise VnetError(f"{label}: {plan.engine} did not take its new config: {out.decode(errors='replace')[-500:]}")
    log.info("%s: %s took its new config", label, plan.engine)


def prepare_run_dir(plan: EnginePlan) -> None:
    """A fresh run directory (0700) holding the config file (0600), both owned by the
    engine's user: the config holds the engine's secrets (BGP and OSPF passwords)."""
    if plan.run_dir.exists():
        shutil.rmtree(plan.run_dir)
    try:
        private_dir(plan.run_dir, plan.user)
        write_private(plan.conf_file, plan.conf, plan.user)
    except LookupError as exc:
        raise VnetError(f"user {plan.user!r} does not exist: is {plan.engine} installed?") from exc


async def start_daemon(netns: str, label: str, owner: str, daemon: DaemonPlan, run_dir: Path,
                       record: ResourceLog) -> None:
    """Start one of an engine's daemons in ``netns`` (at first, or again after it died),
    recorded as ``owner``'s; return once it has written its pidfile and opened its
    ready socket, or raise VnetError with its output."""
    # A daemon killed left its socket file: only the new one's counts as ready.
    if daemon.ready is not None:
        daemon.ready.unlink(missing_ok=True)
    # Recorded by pidfile first: a crash before the pid is known still
    # leaves a record that finds the daemon.
    pending = record.add(Resource("process", str(daemon.pidfile), owner))
    output = run_dir / f"{daemon.name}.out"
    with output.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *links.netns_argv(netns, daemon.argv),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        returncode = await proc.wait()

    def failed(reason: str) -> VnetError:
        return VnetError(f"{label}: {daemon.name} {reason}: "
                         f"{output.read_text(errors='replace').strip()[-500:]}")

    if returncode != 0:
        raise failed(f"did not start (exit {returncode})")
    # A daemonizing parent may exit before its child has written the pidfile (BIRD does).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DAEMON_START_TIMEOUT
    while (pid := read_pidfile(str(daemon.pidfile))) is None:
        if loop.time() > deadline:
            raise failed(f"wrote no pidfile {daemon.pidfile} within {DAEMON_START_TIMEOUT:.0f} s")
        await asyncio.sleep(0.02)
    record.update(pending, process_record(str(daemon.pidfile), owner, pid))
    while daemon.ready is not None and not daemon.ready.exists():
        if loop.time() > deadline:
            raise failed(f"did not open {daemon.ready} within {DAEMON_START_TIMEOUT:.0f} s")
        await asyncio.sleep(0.02)
