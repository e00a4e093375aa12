"""The RF-Client supervisor, with a driver that runs clients as local processes."""

import asyncio
import logging
import re
import signal
from pathlib import Path
from typing import Sequence

from routeflow.config.loader import load_config
from routeflow.vnet.driver import VmDriver
from routeflow.vnet.manager import ClientSupervisor
from routeflow.vnet.plan import VmPlan, plan_vnet
from routeflow.vnet.resources import ResourceLog

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


class LocalDriver(VmDriver):
    """Runs the "client" in this namespace; nothing else."""

    def __init__(self) -> None:
        self.started: list[Sequence[str]] = []

    async def create(self, vm: VmPlan) -> None: ...
    async def start_engine(self, vm: VmPlan) -> None: ...
    async def stop(self, vm: VmPlan) -> None: ...
    async def destroy(self, vm: VmPlan) -> None: ...

    def is_alive(self, vm: VmPlan) -> bool:
        return True

    async def start_client(self, vm: VmPlan, argv: Sequence[str]) -> asyncio.subprocess.Process:
        self.started.append(argv)
        return await asyncio.create_subprocess_exec(*argv)


def _vm() -> VmPlan:
    return plan_vnet(load_config(EXAMPLES / "rftest1" / "routeflow.yaml")).vms[0]


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_restarts_a_killed_client_and_records_it():
    async def body() -> None:
        record = ResourceLog()
        supervisor = ClientSupervisor(_vm(), ["sleep", "60"], LocalDriver(), record, min_backoff=0.01)
        await supervisor.start()
        first = supervisor.process
        assert first is not None and first.returncode is None
        assert [r.pid for r in record.of("rfvmA", "process")] == [first.pid]
        first.send_signal(signal.SIGKILL)
        await _until(lambda: supervisor.process is not first and supervisor.process is not None)
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
        await _until(lambda: supervisor.restarts >= 5)
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
        await _until(lambda: len(driver.started) >= 3)
        await supervisor.stop()

    asyncio.run(body())
