"""Routing-engine configs parsed by the engines themselves, for ``routeflow check``.

An ``engine_config`` is rendered as routeflow runs it (:func:`routeflow.vnet.engine.plan_engine`:
routeflow's own lines, then the engine_config), written to a private temporary directory
(0700, the file 0600: it holds the engine's passwords) and handed to the engine's own
parser: ``bird -p`` (parse only) for BIRD, ``vtysh --dryrun`` for FRR. Their messages are
read by :mod:`routeflow.check.semantics`, which maps their line numbers back to the
engine_config's. An engine that is not installed here is a warning, not an error: the
config may be meant for another host.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from routeflow.check import semantics
from routeflow.check.semantics import Findings
from routeflow.config.schema import Engine
from routeflow.private import private_dir, write_private
from routeflow.vnet import bird
from routeflow.vnet.engine import plan_engine

#: Seconds an engine may take to parse one config.
PARSE_TIMEOUT = 30.0


def check_engine_config(found: Findings, file: str, path: str, engine: str, name: str, engine_config: str,
                        daemons: Sequence[str]) -> None:
    """Have the engine parse the config of instance ``name`` (at ``path``: ``vms[0]``,
    ``routers[1]``); each of its errors is one at ``path.engine_config``."""
    if engine not in (Engine.FRR, Engine.BIRD):
        return
    field = f"{path}.engine_config"
    parser = _parser(engine)
    if isinstance(parser, str):
        found.warning(file, field, f"not checked: {parser}")
        return
    argv, label = parser
    with tempfile.TemporaryDirectory(prefix="routeflow-check-") as tmp:
        plan = plan_engine(engine, name, engine_config, tuple(daemons), Path(tmp))
        assert plan is not None  # frr and bird have a plan
        private_dir(plan.run_dir)
        write_private(plan.conf_file, plan.conf)
        try:
            done = subprocess.run([*argv, str(plan.conf_file)], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=PARSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            found.warning(file, field, f"not checked: {label} took longer than {PARSE_TIMEOUT:g} s")
            return
        except OSError as exc:
            found.warning(file, field, f"not checked: {label} did not run: {exc.strerror or exc}")
            return
    if done.returncode == 0:
        return
    output = done.stderr + done.stdout
    if engine == Engine.BIRD:
        reasons = semantics.bird_errors(output, str(plan.conf_file), plan.conf, engine_config)
    else:
        reasons = semantics.vtysh_errors(output, plan.conf, engine_config)
    for reason in reasons:
        found.error(file, field, f"{reason} ({label})")


@functools.cache
def _parser(engine: str) -> tuple[tuple[str, ...], str] | str:
    """The command parsing a config file of ``engine`` (the file's path follows) and the engine's
    name and version for messages; or why the engine cannot check a config here."""
    if engine == Engine.BIRD:
        if not bird.BIRD.exists():
            return f"BIRD is not installed ({bird.BIRD})"
        # Debian 12 has BIRD 2; later releases may have BIRD 3, whose parser takes the same option.
        version = semantics.bird_version(_output([str(bird.BIRD), "--version"]))
        if version is not None and version[0] < 2:
            return f"the BIRD installed is {version[1]}, and routeflow runs BIRD 2 or later"
        return (str(bird.BIRD), "-p", "-c"), f"BIRD {version[1]}" if version else "BIRD"
    vtysh = shutil.which("vtysh")  # as routeflow.vnet.frr runs it
    if vtysh is None:
        return "FRR is not installed (no vtysh)"
    frr = semantics.frr_version(_output([vtysh, "--help"]))
    return (vtysh, "--dryrun", "-f"), f"FRR {frr} vtysh --dryrun" if frr else "FRR vtysh --dryrun"


def _output(argv: list[str]) -> str:
    """What ``argv`` prints (stdout and stderr); empty if it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=PARSE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr
