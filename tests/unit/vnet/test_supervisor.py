"""The RF-Client supervisor, with a driver that runs clients as local processes."""

import asyncio
import dataclasses
import logging
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Sequence

from routeflow.config.loader import load_config
from routeflow.vnet import links
from routeflow.vnet.driver import VmDriver
from routeflow.vnet.engine import DaemonPlan, EnginePlan, start_engine
from routeflow.vnet.links import IfAddress
from routeflow.vnet.plan import NicPlan, VmPlan, plan_vnet
from routeflow.vnet.resources import ResourceLog, is_running, stop_process
from routeflow.vnet.supervisor import ClientSupervisor, EngineSupervisor
from tests.waiting import until

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


class LocalDriver(VmDriver):
    """Runs the "client" in this namespace; nothing else."""

    def __init__(self) -> None:
        self.started: list[Sequence[str]] = []

    async def create(self, vm: VmPlan) -> None: ...
    async def add_nic(self, vm: VmPlan, nic: NicPlan) -> None: ...
    async def remove_nic(self, vm: VmPlan, nic: NicPlan) -> None: ...
    async def readdress(self, vm: VmPlan, ifname: str, old: Sequence[IfAddress], new: Sequence[IfAddress]) -> None: ...
    async def set_mac(self, vm: VmPlan, ifname: str, mac: str) -> None: ...
    async def start_engine(self, vm: VmPlan) -> None: ...
    async def reload_engine(self, vm: VmPlan) -> None: ...
    async def stop(self, vm: VmPlan) -> None: ...
    async def destroy(self, vm: VmPlan) -> None: ...

    def is_alive(self, vm: VmPlan) -> bool:
        return True

    async def start_client(self, vm: VmPlan, argv: Sequence[str]) -> asyncio.subprocess.Process:
        self.started.append(argv)
        return await asyncio.create_subprocess_exec(*argv)


def _vm() -> VmPlan:
    return plan_vnet(load_config(EXAMPLES / "rftest1" / "routeflow.yaml")).vms[0]


def test_restarts_a_killed_client_and_records_it():
    async def body() -> None:
        record = ResourceLog()
        supervisor = ClientSupervisor(_vm(), ["sleep", "60"], LocalDriver(), record, min_backoff=0.01)
        await supervisor.start()
        first = supervisor.process
        assert first is not None and first.returncode is None
        assert [r.pid for r in record.of("rfvmA", "process")] == [first.pid]
        first.send_signal(signal.SIGKILL)
        await until(lambda: supervisor.process is not first and supervisor.process is not None)
        assert supervisor.restarts == 1
        second = supervisor.process
        assert second is not None
        assert [r.pid for r in record.of("rfvmA", "process")] == [second.pid]
        await supervisor.stop()
        assert second.returncode is not None
        assert record.resources == []

    asyncio.run(body())


def test_back_off_doubles_up_to_the_maximum(caplog):
    async def body() -> None:
        supervisor = ClientSupervisor(_vm(), ["false"], LocalDriver(), ResourceLog(),
                                      min_backoff=0.01, max_backoff=0.04)
        await supervisor.start()
        await until(lambda: supervisor.restarts >= 5)
        await supervisor.stop()

    with caplog.at_level(logging.INFO, logger="routeflow.vnet"):
        asyncio.run(body())
    delays = [float(m) for m in re.findall(r"restarting the RF-Client in ([0-9.]+) s", caplog.text)]
    assert delays[:5] == [0.01, 0.02, 0.04, 0.04, 0.04]


def test_a_client_that_cannot_start_is_retried():
    async def body() -> None:
        driver = LocalDriver()
        supervisor = ClientSupervisor(_vm(), ["/nonexistent/client"], driver, ResourceLog(), min_backoff=0.01)
        await supervisor.start()
        assert supervisor.process is None
        await until(lambda: len(driver.started) >= 3)
        await supervisor.stop()

    asyncio.run(body())


def _fake_engine(run_dir: Path) -> EnginePlan:
    """An "FRR" of two daemons that are sleeps, each writing its pidfile as FRR's do."""
    def daemon(name: str) -> DaemonPlan:
        pidfile = run_dir / f"{name}.pid"
        return DaemonPlan(name, ("sh", "-c", f"sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}"), pidfile)

    return EnginePlan("frr", run_dir, run_dir / "frr.conf", "", None, (daemon("zebra"), daemon("ospfd")))


def test_engine_supervisor_restarts_a_dead_daemon_and_after_zebra_every_daemon(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(links, "netns_argv", lambda name, argv: list(argv))  # no namespace: no root needed
    vm = dataclasses.replace(_vm(), engine_run=_fake_engine(tmp_path / "rA"))
    record = ResourceLog()

    def pids() -> dict[str, int | None]:
        return {r.name.rsplit("/", 1)[-1]: r.pid for r in record.of(vm.name, "process")}

    async def body() -> None:
        await start_engine(vm.netns, f"VM {vm.name}", vm.engine_run, record, vm.name)
        supervisor = EngineSupervisor(vm, record, min_backoff=0.01)
        supervisor.start()
        try:
            first = pids()
            os.kill(first["ospfd.pid"], signal.SIGKILL)
            await until(lambda: pids().get("ospfd.pid") not in (None, first["ospfd.pid"]))
            second = pids()
            assert second["zebra.pid"] == first["zebra.pid"]  # a protocol daemon dies alone
            assert supervisor.restarts == {"zebra": 0, "ospfd": 1}
            os.kill(second["zebra.pid"], signal.SIGKILL)
            await until(lambda: len(pids()) == 2 and all(p is not None and p not in second.values() for p in pids().values()))
            # zebra came back first, then the daemon that was still running was restarted after it.
            assert supervisor.restarts == {"zebra": 1, "ospfd": 2}
            assert all(is_running(r) for r in record.of(vm.name, "process"))
            assert f"VM {vm.name}: zebra (pid {second['zebra.pid']}) exited" in caplog.text
        finally:
            await supervisor.stop()
            for resource in record.of(vm.name, "process"):
                await stop_process(resource)

    with caplog.at_level(logging.INFO, "routeflow.vnet"):
        asyncio.run(body())


def test_engine_supervisor_watches_a_daemon_an_operator_started_again_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(links, "netns_argv", lambda name, argv: list(argv))
    vm = dataclasses.replace(_vm(), engine_run=_fake_engine(tmp_path / "rA"))
    record = ResourceLog()

    async def body() -> None:
        await start_engine(vm.netns, f"VM {vm.name}", vm.engine_run, record, vm.name)
        # A long back-off: the operator is faster than the supervisor.
        supervisor = EngineSupervisor(vm, record, min_backoff=0.5)
        supervisor.start()
        try:
            ospfd = next(d for d in vm.daemons if d.name == "ospfd")
            (entry,) = [r for r in record.of(vm.name, "process") if r.name == str(ospfd.pidfile)]
            os.kill(entry.pid, signal.SIGKILL)
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", f"(exec -a {ospfd.pidfile} sleep 300 </dev/null >/dev/null 2>&1) & echo $! > {ospfd.pidfile}")
            await proc.wait()

            def recorded() -> list:
                return [r for r in record.of(vm.name, "process") if r.name == str(ospfd.pidfile)]

            # The supervisor takes the operator's ospfd as its own (its record follows the pidfile) ...
            await until(lambda: [r.pid for r in recorded()] == [int(ospfd.pidfile.read_text())])
            (now,) = recorded()
            assert is_running(now)
            # ... and, finding it running, starts no other.
            assert supervisor.restarts == {"zebra": 0, "ospfd": 0}
        finally:
            await supervisor.stop()
            for resource in record.of(vm.name, "process"):
                await stop_process(resource)
            subprocess.run(["pkill", "-f", str(ospfd.pidfile)])  # the operator's, if never recorded

    asyncio.run(body())
