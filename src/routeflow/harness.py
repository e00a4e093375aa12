"""A whole routeflow deployment on this machine, for the demo, tests and benchmarks.

:class:`Stack` brings up an example's lab (switches and hosts), the
RF-Controller and the RF-Server (which creates the VMs) as separate
processes, and always tears all of it down again, even when a step fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import yaml

from routeflow.config.loader import load_config
from routeflow.config.schema import Config
from routeflow.lab import network
from routeflow.lab.topology import Host, Topology, load_topology
from routeflow.operator_client import OperatorClient
from routeflow.protocol.messages import VerifyReply
from routeflow.protocol.transport import DEFAULT_SERVER, DEFAULT_UNIX
from routeflow.vnet import ovs
from routeflow.vnet.engine import DaemonPlan
from routeflow.vnet.plan import VmPlan, plan_vnet
from routeflow.vnet.resources import Resource, process_start_time, read_pidfile, running_record

log = logging.getLogger("routeflow.harness")

#: The example deployments, one directory each: package data (the source tree's examples/,
#: linked into the package), so an installed routeflow has them too.
EXAMPLES = Path(__file__).with_name("examples")
#: Record of a deployment left running by ``routeflow demo --keep``.
KEPT = Path("/run/routeflow/demo.json")
#: One whole deployment at a time on this machine: its lab, bridges, namespaces and
#: ports have fixed names. Held by :class:`Stack` for its life and by each benchmark.
STACK_LOCK = Path("/run/routeflow-stack.lock")
#: Set in the environment by a process that holds :data:`STACK_LOCK` for its children
#: (``flock /run/routeflow-stack.lock ...``): they must not wait for it again.
LOCK_HELD_ENV = "ROUTEFLOW_STACK_LOCK_HELD"
#: The OpenFlow port of a second RF-Controller (:meth:`Stack.start_standby_controller`).
STANDBY_OF_PORT = 6654
T = TypeVar("T")

_lock_depth = 0


@contextlib.contextmanager
def stack_lock() -> Iterator[None]:
    """Hold :data:`STACK_LOCK`, waiting for whoever has it (a test, a benchmark, a demo).
    Re-entrant within a process, and a no-op under a parent that holds it (:data:`LOCK_HELD_ENV`)."""
    global _lock_depth
    if _lock_depth or os.environ.get(LOCK_HELD_ENV) == "1":
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    import fcntl

    with open(STACK_LOCK, "a") as handle:
        started = time.monotonic()
        fcntl.flock(handle, fcntl.LOCK_EX)
        if time.monotonic() - started > 1:
            log.info("waited %.0f s for %s", time.monotonic() - started, STACK_LOCK)
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
            fcntl.flock(handle, fcntl.LOCK_UN)


def example_variant(example: str, directory: Path, vm_settings: Mapping[str, Any] | None = None,
                    drop: Sequence[str] = (), config_settings: Mapping[str, Any] | None = None,
                    switch_settings: Mapping[str, Any] | None = None) -> Path:
    """A copy of ``example`` in ``directory``, with ``vm_settings`` set on every VM,
    ``switch_settings`` on every lab switch, ``config_settings`` at the top of its
    routeflow.yaml and the ``drop`` keys taken off every VM and switch (e.g. ``trunk``)."""
    shutil.copytree(EXAMPLES / example, directory)
    for name, entries, settings, top in (("topology.yaml", "switches", switch_settings or {}, {}),
                                         ("routeflow.yaml", "vms", vm_settings or {}, config_settings or {})):
        path = directory / name
        document = yaml.safe_load(path.read_text())
        document.update(top)
        for entry in document[entries]:
            for key in drop:
                entry.pop(key, None)
            entry.update(settings)
        path.write_text(yaml.dump(document, Dumper=_PlainDumper, sort_keys=False))
    return directory


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by several VMs out each time: the config loader refuses aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def captured(ifname: str, bpf: str, seconds: float = 3.0) -> list[str]:
    """The packets (tcpdump's one-line text, with MACs) matching the filter ``bpf``
    that cross ``ifname`` (a switch port's veth end, say) during ``seconds``."""
    out = subprocess.run(["timeout", str(seconds), "tcpdump", "-i", ifname, "-nn", "-e", "-l", bpf],
                         capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line.strip()]


@contextlib.contextmanager
def capturing(namespace: str, ifname: str, bpf: str) -> Iterator[list[str]]:
    """The packets matching ``bpf`` that cross ``ifname`` of ``namespace`` while the block
    runs (tcpdump's one-line text), in the list yielded, filled when the block ends."""
    seen: list[str] = []
    proc = subprocess.Popen(["ip", "netns", "exec", namespace, "tcpdump", "-i", ifname, "-nn", "-l",
                             "--immediate-mode", bpf], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # tcpdump says "listening on" once its filter is in place: nothing is missed after it.
        assert proc.stderr is not None
        proc.stderr.readline()
        yield seen
    finally:
        time.sleep(0.2)  # the last packets' way through the capture
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        seen += [line for line in out.splitlines() if line.strip()]


@dataclass
class PingResult:
    sent: int
    received: int
    rtts_ms: list[float]

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.received == self.sent

    @property
    def avg_ms(self) -> float:
        return sum(self.rtts_ms) / len(self.rtts_ms) if self.rtts_ms else float("nan")

    @property
    def p90_ms(self) -> float:
        if not self.rtts_ms:
            return float("nan")
        ordered = sorted(self.rtts_ms)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


_RTT = re.compile(r"time=([0-9.]+) ms")
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(namespace: str, destination: str, count: int = 1, interval: float = 0.2,
         timeout: float = 1.0) -> PingResult:
    """Ping from inside a namespace (a lab host) and parse per-packet RTTs; an IPv6
    ``destination`` is pinged over IPv6 (``ping -6``)."""
    family = ["-6"] if ipaddress.ip_address(destination).version == 6 else []
    argv = ["ip", "netns", "exec", namespace, "ping", *family, "-n", "-c", str(count), "-i", str(interval),
            "-W", str(timeout), destination]
    proc = subprocess.run(argv, capture_output=True, text=True,
                          timeout=count * (interval + timeout) + 5)
    summary = _SUMMARY.search(proc.stdout)
    sent, received = (int(summary[1]), int(summary[2])) if summary else (count, 0)
    return PingResult(sent, received, [float(x) for x in _RTT.findall(proc.stdout)])


def route_device(namespace: str, destination: str) -> str | None:
    """The interface the kernel of ``namespace`` (a VM, say) sends ``destination`` out of;
    None without a route."""
    out = subprocess.run(["ip", "-n", namespace, "-j", "route", "get", destination],
                         capture_output=True, text=True, check=False).stdout
    routes = json.loads(out) if out.strip() else []
    return routes[0].get("dev") if routes else None


def wait_for(check: Callable[[], T], timeout: float, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not reached within {timeout:.0f} s")
        time.sleep(interval)


class Stack:
    """Lab + RF-Controller + RF-Server (with its VMs) of one example, as processes."""

    def __init__(self, example: str | Path, run_dir: str | Path, of_port: int = 6653) -> None:
        directory = Path(example) if Path(example).is_dir() else EXAMPLES / str(example)
        self.topology_path = directory / "topology.yaml"
        self.config_path = directory / "routeflow.yaml"
        self.topology: Topology = load_topology(self.topology_path)
        self.config: Config = load_config(self.config_path)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.of_port = of_port
        self.server_address = DEFAULT_SERVER
        #: The operator's requests to this stack's server (status, verify).
        self.operator = OperatorClient(self.server_address)
        # The default lab record, so `routeflow lab down` finds a kept demo's lab.
        self.lab_state = network.DEFAULT_STATE
        self.controller: subprocess.Popen[bytes] | None = None
        #: A second controller, standing by while the first is active (None: just one).
        self.standby: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_started_at = 0.0
        #: The stack lock while this deployment is up, and whether the lab is ours to remove
        #: (one found already up, a kept demo's, is not).
        self._held = contextlib.ExitStack()
        self._lab_is_ours = False
        #: Switches connected to the controller (a topology's ``joined: false`` ones join
        #: with :meth:`join_switch`), and those the server rejected.
        self.joined = {s.name for s in self.topology.switches if s.joined}
        self.rejected: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._held.enter_context(stack_lock())
        network.lab_up(self.topology_path, state_path=self.lab_state)
        self._lab_is_ours = True
        self.start_controller()
        self.start_server()

    def stop(self) -> None:
        """Tear down what this stack started; every step runs even if an earlier one fails."""
        try:
            with contextlib.suppress(Exception):
                self.stop_server()
            with contextlib.suppress(Exception):
                self.stop_controller()
            with contextlib.suppress(Exception):
                self.stop_standby_controller()
            if self._lab_is_ours:
                network.lab_down(state_path=self.lab_state)
                self._lab_is_ours = False
                KEPT.unlink(missing_ok=True)
        finally:
            self._held.close()

    def keep(self) -> None:
        """Record the processes so :func:`stop_kept` can stop them from another process."""
        pids = [p.pid for p in (self.server, self.controller, self.standby) if p is not None]
        KEPT.write_text(json.dumps({"pids": pids, "lab_state": str(self.lab_state)}))

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log_file = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        argv = [sys.executable, "-m", "routeflow", "-v", *args]
        return subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def start_controller(self) -> None:
        # The switches' ssl: targets need a controller that speaks TLS (and only TLS).
        targets = [t for s in self.topology.switches for t in s.controller] + list(self.config.rfvs.controller)
        tls = ["--tls"] if any(t.startswith("ssl:") for t in targets) else []
        self.controller = self._spawn("controller", "controller", "--server", self.server_address,
                                      "--listen-port", str(self.of_port), *tls)

    def stop_controller(self, sig: int = signal.SIGTERM) -> None:
        _terminate(self.controller, sig)
        self.controller = None

    def start_standby_controller(self, port: int = STANDBY_OF_PORT) -> None:
        """A second RF-Controller on OpenFlow port ``port``, and every switch of the lab
        and the RFVS given it as a second controller target (the first target, and its
        connection, stay). The RF-Server keeps it standing by while the first is active
        and elects it when that one dies (README, "Restarts": two RF-Controllers)."""
        targets = [t for s in self.topology.switches for t in s.controller] + list(self.config.rfvs.controller)
        if any(not t.startswith("tcp:") for t in targets):
            raise ValueError("a standby controller is for tcp: controller targets only")
        self.standby = self._spawn("controller-standby", "controller", "--server", self.server_address,
                                   "--listen-port", str(port))
        target = f"tcp:127.0.0.1:{port}"
        for bridge in [s.name for s in self.topology.switches] + [self.config.rfvs.bridge]:
            have = subprocess.run(["ovs-vsctl", "get-controller", bridge], check=True, capture_output=True, text=True)
            if target in have.stdout.split():  # started again: the switches have it already
                continue
            subprocess.run(["ovs-vsctl", "--", "--id=@c", "create", "Controller", f'target="{target}"',
                            f"max_backoff={ovs.CONTROLLER_MAX_BACKOFF_MS}",
                            f"inactivity_probe={ovs.CONTROLLER_INACTIVITY_PROBE_MS}",
                            "--", "add", "Bridge", bridge, "controller", "@c"], check=True, capture_output=True)

    def stop_standby_controller(self, sig: int = signal.SIGTERM) -> None:
        _terminate(self.standby, sig)
        self.standby = None

    def controller_ports(self) -> tuple[int, frozenset[int]] | None:
        """The OpenFlow ports of the active controller and of those standing by, once every
        datapath (the RFVS included) has made the active one master; None until then.
        (The harness's controllers are named ``HOST:PORT``, their default.)"""
        doc = self.status(detail=False)
        active = [c["name"] for c in doc["controllers"] if c["active"]]
        if len(active) != 1 or not doc["datapaths"] or any(dp["controller_role"] != "master"
                                                           for dp in doc["datapaths"]):
            return None
        def port(name: str) -> int:
            return int(name.rpartition(":")[2])

        return port(active[0]), frozenset(port(c["name"]) for c in doc["controllers"] if not c["active"])

    def start_server(self) -> None:
        # A killed server leaves its socket behind: wait for the new server's, not that.
        Path(DEFAULT_UNIX).unlink(missing_ok=True)
        self.server_started_at = time.monotonic()
        self.server = self._spawn("server", "server", str(self.config_path))
        wait_for(lambda: Path(DEFAULT_UNIX).exists() or self._server_died(), 30, 0.1)
        self._server_died()

    def spawn_server(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Another RF-Server on this stack's config, with ``args`` (a server pair's second:
        ``--listen`` its own address), logging to ``NAME.log``; the caller stops it."""
        return self._spawn(name, "server", str(self.config_path), *args)

    def _server_died(self) -> bool:
        if self.server is not None and self.server.poll() is not None:
            raise RuntimeError(f"the server exited with {self.server.returncode}; see {self.run_dir}/server.log")
        return False

    def stop_server(self) -> None:
        _terminate(self.server, signal.SIGTERM, grace=30)
        self.server = None

    # -- routing daemons ---------------------------------------------------------

    def _daemon(self, vm: str, daemon: str) -> tuple[VmPlan, DaemonPlan]:
        plan = plan_vnet(self.config).vm(vm)
        return plan, next(d for d in plan.daemons if d.name == daemon)

    def kill_daemon(self, vm: str, daemon: str, sig: int = signal.SIGKILL) -> None:
        """Signal a VM's routing daemon (``zebra``, ``ospfd``, ``bird``): SIGKILL is
        what a crash does. Returns once it is gone (the server then starts it again)."""
        _, plan = self._daemon(vm, daemon)
        pid = read_pidfile(str(plan.pidfile))
        if pid is None:
            raise RuntimeError(f"{vm}: {daemon} has no pid in {plan.pidfile}")
        started = process_start_time(pid)
        os.kill(pid, sig)
        wait_for(lambda: process_start_time(pid) != started, 10, 0.02)

    def daemon_pid(self, vm: str, daemon: str) -> int | None:
        """The pid of a VM's running routing daemon, None if it is not running."""
        _, plan = self._daemon(vm, daemon)
        current = running_record(Resource("process", str(plan.pidfile), vm))
        return current.pid if current is not None else None

    # -- observation -------------------------------------------------------------

    def status(self, detail: bool = True) -> dict[str, Any]:
        """The server's status document (see ``routeflow status --json``)."""
        return self.operator.status(detail)

    def verify(self) -> VerifyReply:
        """The server's verify report, asked once."""
        return self.operator.verify()

    def wait_verify_clean(self, timeout: float = 30.0, interval: float = 0.5) -> VerifyReply:
        """Verify until clean; raise TimeoutError listing the last differences."""
        last: list[VerifyReply] = []

        def clean() -> bool:
            last[:] = [self.verify()]
            return last[0].ok

        try:
            wait_for(clean, timeout, interval)
        except TimeoutError:
            raise TimeoutError("verify not clean:\n" + "\n".join(last[0].differences)) from None
        return last[0]

    def http(self, path: str, timeout: float = 10.0) -> bytes:
        """The body of ``GET path`` (``/api/v1/vms``, ``/metrics``) from the server's HTTP surface."""
        listen = self.config.http.listen
        if listen is None:
            raise RuntimeError(f"{self.config_path}: the server has no HTTP surface (http.listen is off)")
        with urllib.request.urlopen(f"http://{listen}{path}", timeout=timeout) as response:
            return bytes(response.read())

    def api(self, path: str) -> Any:
        """The JSON of the REST API's ``path`` (``/vms``: ``/api/v1/vms``)."""
        return json.loads(self.http("/api/v1" + path))

    def flows(self, dpid: str) -> list[str]:
        """The flows the server believes datapath ``dpid`` (``"0x1"``) holds, as text."""
        return next(dp["flows"] for dp in self.status()["datapaths"] if dp["dpid"] == dpid)

    def all_pairs_ok(self) -> bool:
        """Every host reaches every other, in each IP version the hosts have."""
        return all(r.ok for version in self.versions()
                   for r in self.all_pairs(count=1, timeout=0.5, version=version).values())

    def versions(self) -> list[int]:
        """The IP versions the lab's hosts have addresses of (4, 6 or both)."""
        return [v for v in (4, 6) if self.host_addresses(v)]

    def host_addresses(self, version: int = 4) -> dict[str, str]:
        """Host name -> its first address of IP ``version`` (hosts without one are left out)."""
        found = {}
        for host in self.topology.hosts:
            ours = [a for a in host.addresses if a.version == version]
            if ours:
                found[host.name] = str(ours[0].ip)
        return found

    def all_pairs(self, count: int = 1, interval: float = 0.2, timeout: float = 1.0,
                  version: int = 4) -> dict[tuple[str, str], PingResult]:
        """Each host pings each other host of its tenant (every other host, if no tenants)."""
        addresses = self.host_addresses(version)
        return {
            (src, dst): ping(src, addresses[dst], count, interval, timeout)
            for src, dst in self.host_pairs() if src in addresses and dst in addresses
        }

    def host_pairs(self) -> list[tuple[str, str]]:
        """(source, destination) host pairs that must reach each other: those of one tenant,
        on switches that joined the network and that the server did not reject."""
        served = self.joined - self.rejected
        hosts = [h for h in self.topology.hosts if self.switch_of(h.name) in served | {None}]
        return [(a.name, b.name) for a in hosts for b in hosts if a is not b and a.tenant == b.tenant]

    def switch_of(self, host: str) -> str | None:
        """The switch host ``host`` is cabled to."""
        for link in self.topology.links:
            names = [end.node for end in link.ends]
            if host in names:
                return next((end.node for end in link.ends if end.is_switch), None)
        return None

    def join_switch(self, name: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """Switch ``name`` joins the network (connects to its controllers). Returns the
        server's admission decision on it (None if a configured VM mirrors it)."""
        switch = next(s for s in self.topology.switches if s.name == name)
        network.set_switch(name, "join", state_path=self.lab_state)
        self.joined.add(name)
        if self.config.vms_of_dpid(switch.dpid):
            return None

        def decided() -> dict[str, Any] | None:
            entry = next((d for d in self.status(detail=False)["datapaths"] if d["dpid"] == f"{switch.dpid:#x}"),
                         None)
            return entry["admission"] if entry and entry["connected"] else None
        decision = wait_for(decided, timeout, 0.05)
        assert decision is not None
        if not decision["admitted"]:
            self.rejected.add(name)
        return decision

    def leave_switch(self, name: str) -> None:
        """Switch ``name`` leaves the network (disconnects from its controllers)."""
        network.set_switch(name, "leave", state_path=self.lab_state)
        self.joined.discard(name)
        self.rejected.discard(name)

    def tenants(self) -> dict[str, list[str]]:
        """Tenant -> its hosts, for labs whose hosts belong to tenants."""
        found: dict[str, list[str]] = {}
        for host in self.topology.hosts:
            if host.tenant is not None:
                found.setdefault(host.tenant, []).append(host.name)
        return found

    def tenant_leaks(self, count: int = 3) -> dict[str, tuple[int, int, dict[str, int]]]:
        """Tenant -> (echo requests sent, replies, ICMP packets by other tenants' host that
        saw any) while each of its hosts pings ``count`` times every address of the other
        tenants' hosts: addresses its own hosts have too, so the replies come from those,
        and no other tenant's host may see a single packet."""
        tenants, addresses = self.tenants(), self.host_addresses()
        found = {}
        for tenant, own in tenants.items():
            others = [h for t, hosts in tenants.items() if t != tenant for h in hosts]
            with contextlib.ExitStack() as captures:
                seen = {h: captures.enter_context(capturing(h, Host.ifname, "icmp")) for h in others}
                pings = [ping(src, addresses[dst], count, 0.05) for src in own for dst in others if dst in addresses]
            found[tenant] = (sum(p.sent for p in pings), sum(p.received for p in pings),
                             {h: len(lines) for h, lines in seen.items() if lines})
        return found

    def packet_ins(self) -> dict[str, int]:
        """Slow-path packet-in counters by traffic kind, summed over datapaths."""
        totals: dict[str, int] = {}
        for dp in self.status(detail=False)["datapaths"]:
            for kind, n in (dp.get("packet_in") or {}).items():
                totals[kind] = totals.get(kind, 0) + n
        return totals

    def client_pids(self, vm: str) -> list[int]:
        """PIDs of the RF-Client processes running inside VM ``vm``."""
        out = subprocess.run(["ip", "netns", "pids", vm], capture_output=True, text=True).stdout
        pids = []
        for pid in map(int, out.split()):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"client" in cmdline and b"routeflow" in cmdline:
                    pids.append(pid)
        return pids

    def logs(self) -> Iterator[tuple[str, str]]:
        for path in sorted(self.run_dir.glob("*.log")):
            yield path.name, path.read_text(errors="replace")

    def log_tails(self, lines: int = 60) -> str:
        """The last lines of every component's log, for failure reports."""
        return "\n".join(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]) for name, text in self.logs())


#: How long an example may take to converge.
CONVERGE_TIMEOUT = 90.0


@contextlib.contextmanager
def running(example: str | Path, run_dir: str | Path, ready: Callable[[Stack], bool] | None = None,
            timeout: float = CONVERGE_TIMEOUT) -> Iterator[Stack]:
    """A started :class:`Stack` once ``ready(stack)`` holds and verify is clean.

    If it does not converge, the error carries the tails of the components' logs.
    """
    with Stack(example, run_dir) as stack:
        try:
            if ready is not None:
                wait_for(lambda: ready(stack), timeout, 0.2)
            stack.wait_verify_clean()
        except TimeoutError as exc:
            raise RuntimeError(f"{example} did not converge: {exc}\n{stack.log_tails()}") from exc
        yield stack


#: A server pair's second server's socket (the first listens on the usual one), and the
#: addresses the pair's peers try in turn.
PAIR_SECOND = "/run/routeflow/server2.sock"
PAIR_ADDRESSES = f"unix:{DEFAULT_UNIX},unix:{PAIR_SECOND}"


def pair_stack(example: str, run_dir: Path, endpoints: Sequence[str], lease_ttl: int = 1) -> Stack:
    """A :class:`Stack` of ``example`` whose server is the first of a pair on the etcd at
    ``endpoints``; the controller and the operator try both servers. The second server,
    once the stack is up: ``stack.spawn_server("server2", *PAIR_SECOND_ARGS)``."""
    example_dir = example_variant(example, run_dir / "example", config_settings={
        "listen": [f"unix:{DEFAULT_UNIX}"],
        "store": {"kind": "etcd", "endpoints": list(endpoints), "lease_ttl": lease_ttl,
                  "servers": PAIR_ADDRESSES.split(",")}})
    stack = Stack(example_dir, run_dir)
    stack.server_address = PAIR_ADDRESSES
    stack.operator = OperatorClient(PAIR_ADDRESSES)
    return stack


#: The second server of a :func:`pair_stack`: its own socket, its id.
PAIR_SECOND_ARGS = ("--listen", f"unix:{PAIR_SECOND}", "--id", "second")


def serving(path: str) -> bool:
    """Whether a server accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def stop_kept() -> bool:
    """Stop a deployment left running by ``routeflow demo --keep``; False if there is none."""
    if not KEPT.exists():
        return False
    record = json.loads(KEPT.read_text())
    # Server first: it tears its VMs down on SIGTERM.
    for pid in record["pids"]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, 0.2)
    network.lab_down(state_path=record["lab_state"])
    KEPT.unlink()
    return True


def _terminate(proc: subprocess.Popen[bytes] | None, sig: int, grace: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    # Signal the process alone: it stops its own children in order (the
    # server tears its VMs down); the group is killed only if it hangs.
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
