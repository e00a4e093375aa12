"""What every benchmark shares: the run context, the stack lock, shell helpers,
plain OVS bridges (the baselines) and the check that nothing is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from routeflow.harness import stack_lock as harness_stack_lock
from routeflow.lab.network import Lab
from routeflow.lab.topology import Endpoint, Host, Link, Switch, Topology
from routeflow_bench.parse import parse_flow_count, parse_proc_status_kb

if TYPE_CHECKING:
    from routeflow.harness import Stack

log = logging.getLogger("routeflow.bench")

#: The benchmarks' own lab topologies: package data (a link to the source tree's bench/topologies/).
TOPOLOGIES = Path(__file__).with_name("topologies")
_SOURCE_BENCH = Path(__file__).resolve().parents[1]
#: Where a run keeps what it makes (results/, FAUCET's virtualenv): the source tree's bench/
#: when the package runs from it (bench/run.py, an editable install), else ./bench.
WORK_DIR = _SOURCE_BENCH if (_SOURCE_BENCH / "run.py").is_file() else Path.cwd() / "bench"
#: Prefix of everything the baselines create (bridges, namespaces, veths).
PREFIX = "bnb-"


@dataclass
class Context:
    """Options and shared state of one run."""

    quick: bool
    repeat: int
    sizes: list[int]
    run_dir: Path
    lock: bool = True
    profile: bool = False
    faucet_max: int = 100_000
    #: Route counts of the bgp benchmark: 100k unless --sizes or --quick says otherwise.
    bgp_sizes: list[int] = field(default_factory=lambda: [100_000])
    raw: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)


# --- the stack lock --------------------------------------------------------


@contextlib.contextmanager
def stack_lock(enabled: bool = True) -> Iterator[None]:
    """Hold the stack lock (:func:`routeflow.harness.stack_lock`) for one benchmark.

    Not taken for a benchmark that brings up nothing, nor with ``--no-lock`` (the whole
    run is under ``flock /run/routeflow-stack.lock``, and run.py tells the stacks so).
    """
    if not enabled:
        yield
        return
    with harness_stack_lock():
        yield


# --- shell -------------------------------------------------------------------


def sh(argv: Sequence[str], check: bool = True, timeout: float | None = 60, **kw: Any) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    return proc.stdout


def flow_count(bridge: str, match: str = "") -> int:
    """Flows on an OVS bridge matching ``match`` (e.g. ``table=1``), straight from the switch."""
    argv = ["ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", bridge]
    if match:
        argv.append(match)
    return parse_flow_count(sh(argv, timeout=120))


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM (peak resident set) of a process in kB; None if it is gone."""
    try:
        return parse_proc_status_kb(Path(f"/proc/{pid}/status").read_text()).get("VmHWM")
    except OSError:
        return None


# --- leftovers -----------------------------------------------------------------


def snapshot() -> dict[str, list[str]]:
    """Namespaces and OVS bridges that exist now."""
    netns = sorted(line.split()[0] for line in sh(["ip", "netns", "list"], check=False).splitlines() if line.strip())
    bridges = sorted(sh(["ovs-vsctl", "list-br"], check=False).split())
    return {"netns": netns, "bridges": bridges}


def leftovers(before: dict[str, list[str]]) -> list[str]:
    """What exists now that did not before (our own prefix only is cleaned up here)."""
    after = snapshot()
    extra = [f"netns {n}" for n in after["netns"] if n not in before["netns"]]
    extra += [f"bridge {b}" for b in after["bridges"] if b not in before["bridges"]]
    return extra


def remove_prefixed() -> None:
    """Remove anything named ``bnb-*`` (ours alone), whatever state a failed run left."""
    for b in sh(["ovs-vsctl", "list-br"], check=False).split():
        if b.startswith(PREFIX):
            sh(["ovs-vsctl", "--if-exists", "del-br", b], check=False)
    for line in sh(["ip", "netns", "list"], check=False).splitlines():
        if line.startswith(PREFIX):
            sh(["ip", "netns", "del", line.split()[0]], check=False)
    for line in sh(["ip", "-o", "link", "show"], check=False).splitlines():
        parts = line.split(": ")
        if len(parts) > 1:
            name = parts[1].split("@")[0]
            if name.startswith(PREFIX):
                sh(["ip", "link", "del", name], check=False)


# --- plain OVS bridges: the baselines --------------------------------------------------


@dataclass(frozen=True)
class BaselineHost:
    name: str  # namespace name, bnb-...
    address: str  # with prefix length
    port: int


class PlainBridge:
    """An OVS bridge and hosts on numbered ports, built by the lab builder
    (:class:`routeflow.lab.network.Lab`: userspace datapath, OpenFlow 1.3, fail-mode secure),
    under ``controller`` or none (flows added by hand), and removed with everything it made.
    Its resources are recorded in a state file of its own, so it stands beside a running stack's lab.
    """

    def __init__(self, name: str, hosts: Sequence[BaselineHost] = (), controller: str | None = None,
                 dpid: int | None = None) -> None:
        assert name.startswith(PREFIX)
        self.name = name
        # Without a dpid, one from the name: only a controller tells bridges apart by it.
        switch = Switch(name, dpid if dpid is not None else int.from_bytes(name.encode()[-8:], "big"),
                        (controller,) if controller else ())
        topology = Topology(
            (switch,),
            tuple(Host(h.name, (ipaddress.ip_interface(h.address),)) for h in hosts),
            tuple(Link(f"{name}-{h.name}", Endpoint(name, h.port), Endpoint(h.name)) for h in hosts),
            source=f"benchmark baseline {name}")
        self._state = Path(tempfile.mkdtemp(prefix=f"{name}-")) / "lab.json"
        self._lab = Lab(topology, self._state)

    def __enter__(self) -> PlainBridge:
        asyncio.run(self._lab.start())  # removes what it made if it fails
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run(self._lab.stop())
        shutil.rmtree(self._state.parent, ignore_errors=True)

    def add_flows_text(self, text: str, bundle: bool = False) -> None:
        """``ovs-ofctl add-flows`` from text; ``bundle``: as one OpenFlow bundle (one transaction,
        about ten times faster for 100k flows than one flow-mod at a time)."""
        sh(["ovs-ofctl", "-O", "OpenFlow13", *(["--bundle"] if bundle else []), "add-flows", self.name, "-"],
           input=text, timeout=3600)


def timed_verify(stack: Stack, timeout: float) -> float:
    """Seconds until ``routeflow verify`` is clean on ``stack`` (TimeoutError after ``timeout``)."""
    t = time.monotonic()
    stack.wait_verify_clean(timeout)
    return time.monotonic() - t


def pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")
