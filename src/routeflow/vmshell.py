"""``routeflow vm NAME shell``: a VM's routing shell, as if logged in to the router.

FRR's ``vtysh`` or BIRD's ``birdc``, pointed at the sockets of that VM's own
engine instance (:func:`routeflow.vnet.engine.plan_engine` says where they are)
and run inside the VM's network namespace, so that the shell's ``ping`` and
``traceroute`` go out of the router's interfaces. Which engine a VM runs comes
from its config, or from the server that runs it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from routeflow.config.schema import Engine
from routeflow.protocol.auth import KEY_DIR
from routeflow.vnet import VnetError, bird, frr, links
from routeflow.vnet.engine import plan_engine
from routeflow.vnet.frr import DEFAULT_RUN_ROOT


def engine_of(vm: str, config: str | None, server: str, keys: Path = KEY_DIR) -> str:
    """The engine (``frr``, ``bird``, ``none``) VM ``vm`` runs, as the config file ``config``
    says, or without one as the server at ``server`` says. VnetError if there is no such VM;
    :class:`~routeflow.operator_client.ServerUnreachable` if the server cannot be asked."""
    if config is not None:
        from routeflow.config.loader import load_config

        engines = {v.name: v.engine for v in load_config(config).vms}
        where = config
    else:
        from routeflow.operator_client import OperatorClient, ServerUnreachable

        try:
            status = OperatorClient(server, keys).status(detail=False)
        except ServerUnreachable as exc:
            raise ServerUnreachable(server, f"{exc.reason} (or give the VM's config: --config CONFIG)") from exc
        engines = {v["name"]: v["engine"] for v in status["vms"]}
        where = f"the server at {server}"
    if vm not in engines:
        raise VnetError(f"no VM {vm!r} in {where} (its VMs: {', '.join(sorted(engines)) or 'none'})")
    return engines[vm]


def shell_argv(vm: str, engine: str, command: Sequence[str] = (), run_root: Path = DEFAULT_RUN_ROOT) -> list[str]:
    """The command line of ``vm``'s routing shell, interactive, or running the one
    ``command`` (its words, ``show ip route``). VnetError if the VM or its engine is not running."""
    plan = plan_engine(engine, vm, "", (), run_root)
    if plan is None:
        raise VnetError(f"VM {vm} runs no routing engine (engine: {engine}): it has no routing shell")
    netns = vm  # the namespace driver names each VM's namespace after it
    if not links.netns_exists(netns):
        raise VnetError(f"VM {vm} is not running: no network namespace {netns}")
    # The first daemon's ready socket (zebra's API, BIRD's control socket) exists while the engine runs.
    ready = plan.daemons[0].ready
    if ready is not None and not ready.exists():
        raise VnetError(f"VM {vm}'s {engine} is not running: no {ready}")
    line = " ".join(command)
    if engine == Engine.FRR:
        return links.netns_argv(netns, frr.vtysh_argv(plan.run_dir, [line] if line else []))
    return links.netns_argv(netns, bird.birdc_argv(plan.run_dir, line))


def open_shell(argv: Sequence[str]) -> NoReturn:
    """Become ``argv``: the shell then has the terminal and its signals (Ctrl-C is the
    shell's, not ours), and its exit code is the command's."""
    os.execvp(argv[0], list(argv))
