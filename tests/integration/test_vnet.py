"""The virtual environment on the real stack: namespaces, RFVS, FRR, supervised clients.

Brings up ``examples/rftest2/routeflow.yaml`` (VMs rA..rD on bridge rfvs)
with ``sleep`` standing in for the RF-Client, checks what runs where, kills a
client to see it restarted, and that teardown (normal, after a failed
bring-up, or after a crash) leaves no namespace, interface, bridge or
process behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.processes import output
from tests.waiting import until

from routeflow.config.loader import load_config
from routeflow.harness import wait_for
from routeflow.vnet import VnetError, links, ovs
from routeflow.vnet.driver import NamespaceDriver
from routeflow.vnet.frr import vtysh
from routeflow.vnet.manager import VirtualEnvironment, cleanup_stale
from routeflow.vnet.plan import VmPlan, plan_vnet
from routeflow.vnet.resources import Resource, ResourceLog, is_running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ovs_running")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rftest2" / "routeflow.yaml"
CONFIG = load_config(EXAMPLE)
#: Not the default /run/routeflow/vms, so a server running on this machine is not disturbed.
RUN_ROOT = Path("/run/routeflow/test-vnet")
SLEEP = ["sleep", "600"]


def _vnet_objects() -> list[str]:
    """rftest2's VM namespaces, RFVS bridge, RFVS-side veths and run dirs that exist now."""
    found = [f"netns {vm.name}" for vm in CONFIG.vms if links.netns_exists(vm.name)]
    if CONFIG.rfvs.bridge in output("ovs-vsctl", "list-br").split():
        found.append(f"bridge {CONFIG.rfvs.bridge}")
    names = [f"{vm.name}-{i.name}" for vm in CONFIG.vms for i in vm.interfaces]
    found += [f"link {n}" for n in asyncio.run(links.existing_links(names))]
    found += [f"dir {d}" for d in RUN_ROOT.glob("*")]
    return found


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state file path; rftest2's names must be free before and after the test."""
    in_use = _vnet_objects()
    if in_use:
        pytest.fail(f"rftest2's VM names are in use by something else on this machine: {in_use}")
    path = tmp_path / "vnet.json"
    try:
        yield path
    finally:
        asyncio.run(cleanup_stale(path))
        assert _vnet_objects() == []
        assert not path.exists()


def _venv(state: Path, **kwargs: object) -> VirtualEnvironment:
    return VirtualEnvironment(CONFIG, state_path=state, run_root=RUN_ROOT,
                              client_argv=lambda vm: SLEEP, min_backoff=0.1, **kwargs)  # type: ignore[arg-type]


def _recorded_processes(state: Path) -> list[Resource]:
    return ResourceLog.load(state).of(kind="process")


def _check_vm(plan: VmPlan) -> None:
    by_name = {a["ifname"]: a for a in json.loads(output(*links.netns_argv(plan.netns, ["ip", "-j", "addr"])))}
    assert set(by_name) == {"lo"} | {nic.name for nic in plan.nics}
    assert "UP" in by_name["lo"]["flags"]
    assert set(plan.loopback) <= set(asyncio.run(links.addresses(plan.netns, "lo")))
    for nic in plan.nics:
        assert "UP" in by_name[nic.name]["flags"]
        assert by_name[nic.name]["address"] == nic.mac
        assert asyncio.run(links.addresses(plan.netns, nic.name)) == list(nic.addresses)
    sysctl = output(*links.netns_argv(plan.netns, ["sysctl", "-n", "net.ipv4.ip_forward",
                                                "net.ipv4.conf.all.rp_filter"])).split()
    assert sysctl == ["1", "0"]
    # The engine's config holds its secrets (passwords): only its own user reads it.
    assert plan.run_dir is not None and plan.engine_run is not None
    for path, mode in ((plan.run_dir, 0o700), (plan.engine_run.conf_file, 0o600)):
        info = path.stat()
        assert (stat.S_IMODE(info.st_mode), pwd.getpwuid(info.st_uid).pw_name) == (mode, "frr"), path


def test_bring_up_supervise_and_tear_down(state: Path) -> None:
    async def scenario() -> list[int]:
        # Like the RF-Server: a loop that handles SIGTERM must not see one
        # from the namespace helpers pyroute2 forks.
        sigterm = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, sigterm.set)
        try:
            return await in_environment()
        finally:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            assert not sigterm.is_set(), "spurious SIGTERM"

    async def in_environment() -> list[int]:
        async with _venv(state) as venv:
            plan = venv.plan
            rfvs_ports = await ovs.list_ports(plan.bridge.name)
            trunks = [name for name, _, _ in plan.bridge.patches]
            assert sorted(rfvs_ports) == sorted([n.host_ifname for vm in plan.vms for n in vm.nics] + trunks)
            bridge = await ovs.vsctl("get", "Bridge", "rfvs", "datapath_type", "fail_mode", "protocols",
                                     "other-config:datapath-id")
            assert bridge.split() == ["netdev", "secure", "[OpenFlow13]", '"0000000000007266"']
            for vm in plan.vms:
                await asyncio.to_thread(_check_vm, vm)
                assert venv.is_alive(vm.name)
                ospf = await asyncio.to_thread(vtysh, vm.name, "show ip ospf", RUN_ROOT)
                assert f"Router ID: 10.255.0.{vm.dpid}" in ospf
                interfaces = await asyncio.to_thread(vtysh, vm.name, "show ip ospf interface json", RUN_ROOT)
                assert set(json.loads(interfaces)["interfaces"]) == {"lo"} | {n.name for n in vm.nics}
            pids = [r.pid for r in _recorded_processes(state)]
            assert len(pids) == sum(len(vm.daemons) + 1 for vm in plan.vms)  # each daemon, and the clients

            # A killed client comes back, and the record follows it.
            old = venv.client_pid("rB")
            assert old is not None
            os.kill(old, signal.SIGKILL)
            await until(lambda: venv.client_pid("rB") not in (None, old), timeout=10, interval=0.05)
            assert venv.supervisors["rB"].restarts == 1
            recorded = [r.pid for r in _recorded_processes(state)]
            assert venv.client_pid("rB") in recorded and old not in recorded

            # A VM whose daemon dies is no longer alive.
            zebra = next(r for r in ResourceLog.load(state).of("rD", "process") if r.name.endswith("zebra.pid"))
            assert zebra.pid is not None
            os.kill(zebra.pid, signal.SIGKILL)
            await until(lambda: not venv.is_alive("rD"), interval=0.05)
            return [r.pid for r in _recorded_processes(state) if r.pid is not None]

    pids = asyncio.run(scenario())
    assert _vnet_objects() == []
    assert not state.exists()
    # Each recorded process ends (or is a zombie its parent has yet to reap).
    wait_for(lambda: not [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _proc_state(p)], 5, 0.05)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_failed_bring_up_removes_what_it_made(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_start_engine = NamespaceDriver.start_engine

    async def failing_start_engine(self: NamespaceDriver, vm: VmPlan) -> None:
        if vm.name == "rC":
            raise VnetError("injected failure")
        await real_start_engine(self, vm)

    monkeypatch.setattr(NamespaceDriver, "start_engine", failing_start_engine)
    with pytest.raises(VnetError, match="injected"):
        asyncio.run(_venv(state).start())
    assert _vnet_objects() == []
    assert not state.exists()


def test_second_environment_on_the_same_state_is_refused(state: Path) -> None:
    async def scenario() -> None:
        async with _venv(state, start_clients=False):
            with pytest.raises(VnetError, match="lock"):
                await _venv(state).start()
            with pytest.raises(VnetError, match="already in use: namespace rA"):
                await _venv(state.with_name("other.json")).start()

    asyncio.run(scenario())


CRASHING_SERVER = """
import asyncio, sys
from pathlib import Path
from routeflow.config.loader import load_config
from routeflow.vnet.manager import VirtualEnvironment

async def main():
    venv = VirtualEnvironment(load_config(sys.argv[1]), state_path=Path(sys.argv[2]),
                              run_root=Path(sys.argv[3]), client_argv=lambda vm: ["sleep", "600"])
    await venv.start()
    print("up", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_cleanup_after_a_crash(state: Path) -> None:
    server = subprocess.Popen([sys.executable, "-c", CRASHING_SERVER, str(EXAMPLE), str(state), str(RUN_ROOT)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "up\n"
    finally:
        server.kill()
        server.wait()
    leftovers = _recorded_processes(state)
    daemons = sum(len(vm.daemons) + 1 for vm in plan_vnet(load_config(EXAMPLE), RUN_ROOT).vms)  # and clients
    assert len(leftovers) == daemons and all(is_running(r) for r in leftovers)
    assert len(_vnet_objects()) > 0
    assert asyncio.run(cleanup_stale(state)) is True
    assert _vnet_objects() == []
    assert not any(is_running(r) for r in leftovers)
    assert asyncio.run(cleanup_stale(state)) is False


def test_removing_a_namespace_ends_every_process_in_it_whoever_started_it() -> None:
    """A daemon started by hand inside a VM (not recorded anywhere) ends with its namespace;
    a process that ignores SIGTERM is killed after the grace period."""
    name = "tvn-pids"

    async def scenario() -> None:
        await links.remove_netns(name)
        await links.create_netns(name)
        procs = [subprocess.Popen(["ip", "netns", "exec", name, "sleep", "1000"], start_new_session=True),
                 subprocess.Popen(["ip", "netns", "exec", name, "sh", "-c", "trap '' TERM; sleep 1000 & wait"],
                                  start_new_session=True)]
        outside = subprocess.Popen(["sleep", "1000"])
        try:
            await until(lambda: len(links.netns_pids(name)) >= 3, interval=0.05)  # sleep, sh and its sleep
            started = time.monotonic()
            await links.remove_netns(name)
            assert not links.netns_exists(name)
            for proc in procs:
                assert proc.wait(5) is not None
            assert time.monotonic() - started < links.NETNS_GRACE + 2
            assert outside.poll() is None  # nothing outside the namespace is touched
        finally:
            outside.kill()
            for proc in procs:
                proc.kill()
            await links.remove_netns(name)

    asyncio.run(scenario())
    assert name not in output("ip", "netns", "list")
