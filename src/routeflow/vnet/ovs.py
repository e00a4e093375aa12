"""Open vSwitch bridges as OpenFlow switches, driven through ``ovs-vsctl``.

There is no kernel datapath on the machines routeflow targets, so every
bridge uses the userspace (``netdev``) datapath. Bridges are created in one
ovsdb transaction each, so ovs-vswitchd never sees a half-configured bridge
(for instance one in standalone mode, flooding, before ``fail_mode`` is set).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from routeflow.protocol import pki
from routeflow.vnet import VnetError

log = logging.getLogger("routeflow.vnet")

VSCTL_TIMEOUT = 10
OVS_START = "/usr/share/openvswitch/scripts/ovs-ctl start --system-id=random"
#: Reconnect to a restarted controller within a second, not the default 8 s.
CONTROLLER_MAX_BACKOFF_MS = 1000
#: Idle time before OVS probes the controller (and, after as long again with
#: no answer, drops it). The default; shorter risks dropping a controller
#: that is busy encoding a large flow table in pure Python.
CONTROLLER_INACTIVITY_PROBE_MS = 5000


class OvsError(VnetError):
    """An ``ovs-vsctl`` command failed."""


@dataclass(frozen=True)
class BridgeSpec:
    """An OpenFlow 1.3 bridge under its controllers (one, a pair, or none: its flows are
    added by hand), with ports to add."""

    name: str
    dpid: int
    controller: tuple[str, ...]
    #: ``(interface name, OpenFlow port number or None for any)``
    ports: tuple[tuple[str, int | None], ...] = ()
    #: Patch ports to other bridges of this Open vSwitch: ``(name, OpenFlow port
    #: number or None, peer port name)``. The peer may be created later, by
    #: another party: the link comes up when both ends exist.
    patches: tuple[tuple[str, int | None, str], ...] = ()

    @property
    def tls(self) -> bool:
        """Its controller target is ``ssl:`` (the switch needs Open vSwitch's TLS credential)."""
        return any(target.startswith("ssl:") for target in self.controller)


def controllers_argv(bridge: str, targets: tuple[str, ...]) -> list[str]:
    """The ``ovs-vsctl`` arguments giving ``bridge`` exactly the controllers ``targets``."""
    argv = []
    for i, target in enumerate(targets):
        argv += ["--", f"--id=@c{i}", "create", "Controller", f'target="{target}"',
                 f"max_backoff={CONTROLLER_MAX_BACKOFF_MS}", f"inactivity_probe={CONTROLLER_INACTIVITY_PROBE_MS}"]
    return argv + ["--", "set", "Bridge", bridge, "controller=[" + ",".join(f"@c{i}" for i in range(len(targets))) + "]"]


async def set_controllers(bridge: str, targets: tuple[str, ...]) -> None:
    """Connect ``bridge`` to ``targets`` (none: disconnect it from every controller)."""
    await vsctl(*controllers_argv(bridge, targets))


def add_bridge_argv(spec: BridgeSpec) -> list[str]:
    """The ``ovs-vsctl`` arguments creating ``spec`` in a single transaction."""
    argv = [
        "--", "add-br", spec.name,
        "--", "set", "Bridge", spec.name,
        "datapath_type=netdev",
        # secure: without a controller, forward nothing (never act as a learning switch).
        "fail_mode=secure",
        "protocols=OpenFlow13",
        f"other-config:datapath-id={spec.dpid:016x}",
        # No hidden in-band flows: the flow table is exactly what the controller installs.
        "other-config:disable-in-band=true",
    ]
    if spec.controller:
        argv += controllers_argv(spec.name, spec.controller)
    for ifname, ofport in spec.ports:
        argv += add_port_argv(spec.name, ifname, ofport)
    for name, ofport, peer in spec.patches:
        argv += add_port_argv(spec.name, name, ofport)
        argv += ["--", "set", "Interface", name, "type=patch", f"options:peer={peer}"]
    return argv


def add_port_argv(bridge: str, ifname: str, ofport: int | None = None) -> list[str]:
    """The ``ovs-vsctl`` arguments adding ``ifname`` to ``bridge``."""
    argv = ["--", "add-port", bridge, ifname]
    if ofport is not None:
        argv += ["--", "set", "Interface", ifname, f"ofport_request={ofport}"]
    return argv


async def _run(argv: list[str]) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError as exc:
        raise OvsError(f"{argv[0]} not found: install openvswitch-switch") from exc
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise OvsError(f"{' '.join(argv)}: {err.decode().strip() or f'exit {proc.returncode}'}")
    return out.decode()


async def vsctl(*args: str) -> str:
    """Run ``ovs-vsctl`` with ``args``; return its output or raise OvsError."""
    return await _run(["ovs-vsctl", f"--timeout={VSCTL_TIMEOUT}", *args])


async def check_running() -> None:
    """Raise OvsError with the remedy if ovsdb-server or ovs-vswitchd is not answering."""
    try:
        await vsctl("show")
        await _run(["ovs-appctl", f"--timeout={VSCTL_TIMEOUT}", "-t", "ovs-vswitchd", "version"])
    except OvsError as exc:
        raise OvsError(f"Open vSwitch is not running ({exc}); start it with: {OVS_START}") from exc


async def add_bridge(spec: BridgeSpec) -> None:
    log.info("bridge %s: dpid %016x, controller %s, %d ports", spec.name, spec.dpid,
             " ".join(spec.controller) or "none", len(spec.ports))
    await vsctl(*add_bridge_argv(spec))


async def set_switch_credential(key_dir: Path) -> None:
    """Have ovs-vswitchd present the ``switch`` TLS credential of ``key_dir`` (made
    if missing) on its ``ssl:`` controller connections, and trust that directory's CA.
    Global to this Open vSwitch: every bridge's ``ssl:`` connections use it."""
    pki.ensure(key_dir, [pki.SWITCH])
    cred = pki.credential(key_dir, pki.SWITCH)
    await vsctl("set-ssl", str(cred.key), str(cred.cert), str(pki.tls_dir(key_dir) / "ca.crt"))


async def del_ssl() -> None:
    await vsctl("del-ssl")


async def add_port(bridge: str, ifname: str, ofport: int | None = None) -> None:
    await vsctl(*add_port_argv(bridge, ifname, ofport))


async def del_bridge(name: str) -> None:
    """Delete bridge ``name`` (and its ports) if it exists."""
    await vsctl("--if-exists", "del-br", name)


async def del_port(ifname: str) -> None:
    """Remove port ``ifname`` from whichever bridge has it, if any."""
    await vsctl("--if-exists", "del-port", ifname)


async def list_bridges() -> list[str]:
    return (await vsctl("list-br")).split()


async def set_port_forwarding(bridge: str, ifname: str, forwarding: bool) -> None:
    """Let port ``ifname`` of ``bridge`` pass traffic, or drop everything it receives and
    everything sent to it (OpenFlow port config no-receive, no-forward) while its link,
    and the port state a controller sees, stay up."""
    for bit in ("receive", "forward"):
        await _run(["ovs-ofctl", "-O", "OpenFlow13", "mod-port", bridge, ifname, bit if forwarding else f"no-{bit}"])


async def list_ports(bridge: str) -> list[str]:
    return (await vsctl("list-ports", bridge)).split()
