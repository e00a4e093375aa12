"""A restarted virtual environment adopts what the previous run left as planned.

Namespaces, interfaces and Open vSwitch are a fake in memory; the engine
daemons and RF-Clients are real ``sleep`` processes, so process identity,
adoption and supervision are the real thing. The previous run "crashes" by
leaving (:meth:`VirtualEnvironment.leave`) in the same event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any, Sequence

import pytest

from routeflow.config.loader import parse_config
from routeflow.config.schema import Config
from routeflow.vnet import links, ovs
from routeflow.vnet.driver import NamespaceDriver
from routeflow.vnet.manager import VirtualEnvironment
from routeflow.vnet.ovs import BridgeSpec
from routeflow.vnet.plan import VmPlan, plan_vnet, vm_digests
from routeflow.vnet.resources import Resource, ResourceLog, is_running, process_record
from tests.waiting import until

SLEEP = ["sleep", "60"]


def _vm(name: str, dpid: int, cost: int = 10) -> dict[str, Any]:
    return {"name": name, "dpid": dpid, "engine": "frr", "daemons": ["ospfd"],
            "interfaces": [{"name": "eth1", "port": 1, "mac": f"02:00:00:00:{dpid:02x}:01",
                            "addresses": [f"10.0.{dpid}.1/24"]}],
            "engine_config": f"interface eth1\n ip ospf cost {cost}\nrouter ospf\n network 10.0.0.0/8 area 0\n"}


CONFIG = parse_config({"vms": [_vm("rA", 1), _vm("rB", 2), _vm("rC", 3)]})


class FakeSystem:
    """Namespaces, root-namespace interfaces and OVS bridges with their ports, in memory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.netns: set[str] = set()
        self.links: set[str] = set()
        self.bridges: dict[str, set[str]] = {}
        self.daemons: list[subprocess.Popen[bytes]] = []
        for module, name, fake in [
            (links, "netns_exists", lambda name: name in self.netns),
            (links, "remove_netns", self._async(self.netns.discard)),
            (links, "existing_links", self._async(lambda names, namespace=None: [n for n in names if n in self.links])),
            (links, "delete_link", self._async(lambda name, namespace=None: self.links.discard(name))),
            (ovs, "check_running", self._async(lambda: None)),
            (ovs, "list_bridges", self._async(lambda: list(self.bridges))),
            (ovs, "add_bridge", self._async(self._add_bridge)),
            (ovs, "del_bridge", self._async(lambda name: self.bridges.pop(name, None))),
            (ovs, "del_port", self._async(self._del_port)),
            (ovs, "list_ports", self._async(lambda bridge: sorted(self.bridges[bridge]))),
            (ovs, "vsctl", self._async(self._vsctl)),
        ]:
            monkeypatch.setattr(module, name, fake)

    @staticmethod
    def _async(function: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)
        return call

    def _add_bridge(self, spec: BridgeSpec) -> None:
        self.bridges[spec.name] = {name for name, _ in spec.ports} | {name for name, _, _ in spec.patches}

    def _del_port(self, name: str) -> None:
        for ports in self.bridges.values():
            ports.discard(name)

    def _vsctl(self, *args: str) -> str:
        assert args == ("--bare", "--columns=name", "list", "Port"), args
        return "\n".join(name for ports in self.bridges.values() for name in ports)

    def empty(self) -> bool:
        return not (self.netns or self.links or self.bridges)

    def reap(self) -> None:
        for proc in self.daemons:
            proc.kill()
            proc.wait()


def fake_driver(system: FakeSystem, created: list[str]) -> Any:
    class FakeDriver(NamespaceDriver):
        """A namespace driver whose namespaces are fake and whose daemons are ``sleep``s;
        stopping and removal are the real driver's, by the record."""

        async def create(self, vm: VmPlan) -> None:
            created.append(vm.name)
            self.record.add(Resource("netns", vm.netns, vm.name))
            system.netns.add(vm.netns)
            for nic in vm.nics:
                self.record.add(Resource("link", nic.host_ifname, vm.name))
                system.links.add(nic.host_ifname)
                self.record.add(Resource("port", nic.host_ifname, vm.name))
                system.bridges[self.bridge].add(nic.host_ifname)

        async def start_engine(self, vm: VmPlan) -> None:
            assert vm.run_dir is not None
            self.record.add(Resource("dir", str(vm.run_dir), vm.name))
            vm.run_dir.mkdir(parents=True)
            for daemon in vm.daemons:
                proc = subprocess.Popen(SLEEP, start_new_session=True)
                system.daemons.append(proc)
                self.record.add(process_record(str(daemon.pidfile), vm.name, proc.pid))

        async def start_client(self, vm: VmPlan, argv: Sequence[str]) -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(*argv)

    return FakeDriver


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch):
    fake = FakeSystem(monkeypatch)
    yield fake
    fake.reap()


def _venv(config: Config, tmp_path: Path, system: FakeSystem, created: list[str],
          client: Sequence[str] = SLEEP) -> VirtualEnvironment:
    return VirtualEnvironment(config, state_path=tmp_path / "vnet.json", run_root=tmp_path / "vms",
                              client_argv=lambda vm: list(client), driver=fake_driver(system, created),
                              min_backoff=0.01)


def _daemon_pids(venv: VirtualEnvironment, vm: str) -> list[int | None]:
    return [r.pid for r in venv.record.of(vm, "process") if not r.name.startswith("client:")]


def _fates(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """The line logged for each VM recorded by the previous run or configured now, by VM."""
    return {m.split(":")[0][3:]: m for m in caplog.messages
            if re.match(r"VM \w+: (adopted|recreated|created|removed) \(", m)}


def test_plan_digests_tell_which_part_changed():
    before = vm_digests(plan_vnet(CONFIG).vm("rA"))
    assert before == vm_digests(plan_vnet(parse_config({"vms": [_vm("rA", 1)]})).vm("rA"))
    cost = vm_digests(plan_vnet(parse_config({"vms": [_vm("rA", 1, cost=20)]})).vm("rA"))
    assert [part for part in before if before[part] != cost[part]] == ["engine_run"]
    other_mac = _vm("rA", 1)
    other_mac["interfaces"][0]["mac"] = "02:00:00:00:99:01"
    mac = vm_digests(plan_vnet(parse_config({"vms": [other_mac]})).vm("rA"))
    assert [part for part in before if before[part] != mac[part]] == ["nics"]


def test_a_new_run_adopts_every_unchanged_vm_and_its_client(tmp_path, system, caplog):
    created: list[str] = []

    async def body() -> None:
        first = _venv(CONFIG, tmp_path, system, created)
        await first.start()
        daemons = {vm: _daemon_pids(first, vm) for vm in ("rA", "rB", "rC")}
        clients = {vm: first.client_pid(vm) for vm in ("rA", "rB", "rC")}
        await first.leave()
        await first.stop()  # after leaving: removes nothing
        assert (tmp_path / "vnet.json").exists() and system.netns == {"rA", "rB", "rC"}

        created.clear()
        second = _venv(CONFIG, tmp_path, system, created)
        await second.start()
        assert created == []
        assert {vm: _daemon_pids(second, vm) for vm in daemons} == daemons
        assert {vm: second.client_pid(vm) for vm in clients} == clients
        assert second.supervisors["rA"].adopted is not None

        # An adopted client that exits is restarted as any other, and the record follows.
        old = clients["rB"]
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await until(lambda: second.client_pid("rB") not in (None, old))
        assert second.supervisors["rB"].restarts == 1
        recorded = [r.pid for r in second.record.of("rB", "process")]
        assert second.client_pid("rB") in recorded and old not in recorded

        adopted_client = clients["rA"]
        await second.stop()
        assert system.empty() and not (tmp_path / "vnet.json").exists()
        assert adopted_client is not None and not is_running(process_record("c", "rA", adopted_client))

    with caplog.at_level(logging.INFO, logger="routeflow.vnet"):
        asyncio.run(body())
    fates = _fates(caplog)
    assert sorted(fates) == ["rA", "rB", "rC"] and all(": adopted (" in m for m in fates.values())
    assert re.fullmatch(r"VM rA: adopted \(namespace rA, zebra \d+, ospfd \d+; RF-Client \d+\)", fates["rA"])


def test_a_changed_vm_is_recreated_a_dropped_one_removed_a_new_one_created(tmp_path, system, caplog):
    created: list[str] = []

    async def body() -> None:
        first = _venv(CONFIG, tmp_path, system, created)
        await first.start()
        before = {vm: _daemon_pids(first, vm) for vm in ("rA", "rB", "rC")}
        await first.leave()

        created.clear()
        changed = parse_config({"vms": [_vm("rA", 1), _vm("rB", 2, cost=20), _vm("rD", 4)]})
        second = _venv(changed, tmp_path, system, created)
        await second.start()
        assert created == ["rB", "rD"]
        assert _daemon_pids(second, "rA") == before["rA"]
        assert not set(_daemon_pids(second, "rB")) & set(before["rB"])
        assert system.netns == {"rA", "rB", "rD"} and "rC-eth1" not in system.links
        assert not any(r.owner == "rC" for r in second.record.resources)
        assert not any(is_running(process_record("d", "rC", pid)) for pid in before["rC"] if pid)
        await second.stop()
        assert system.empty()

    with caplog.at_level(logging.INFO, logger="routeflow.vnet"):
        asyncio.run(body())
    fates = _fates(caplog)
    assert fates.pop("rA").startswith("VM rA: adopted (")
    assert fates == {"rB": "VM rB: recreated (planned differently: engine_run)",
                     "rC": "VM rC: removed (no longer configured)",
                     "rD": "VM rD: created (not in the previous run)"}


def test_a_vm_missing_a_part_is_recreated_and_a_dead_client_restarted(tmp_path, system, caplog):
    created: list[str] = []

    async def body() -> None:
        first = _venv(CONFIG, tmp_path, system, created)
        await first.start()
        rb_zebra = next(r for r in first.record.of("rB", "process") if r.name.endswith("zebra.pid"))
        ra_client = next(r for r in first.record.of("rA", "process") if r.name == "client:rA")
        client_a = ra_client.pid
        await first.leave()
        assert rb_zebra.pid is not None and client_a is not None
        os.kill(rb_zebra.pid, signal.SIGKILL)  # rB's engine crashed
        system.bridges["rfvs"].discard("rC-eth1")  # rC's port was removed by hand
        os.kill(client_a, signal.SIGKILL)  # rA's client died with the server
        await until(lambda: not is_running(rb_zebra) and not is_running(ra_client))

        created.clear()
        second = _venv(CONFIG, tmp_path, system, created)
        await second.start()
        assert created == ["rB", "rC"]
        await until(lambda: second.client_pid("rA") not in (None, client_a))
        await second.stop()
        assert system.empty()

    with caplog.at_level(logging.INFO, logger="routeflow.vnet"):
        asyncio.run(body())
    fates = _fates(caplog)
    assert fates["rA"].startswith("VM rA: adopted (") and fates["rA"].endswith("; RF-Client to be started: it had exited)")
    assert re.fullmatch(r"VM rB: recreated \(not whole, gone: process /.*/rB/zebra.pid\)", fates["rB"])
    assert fates["rC"] == "VM rC: recreated (not whole, gone: port rC-eth1)"


def test_a_changed_client_command_restarts_the_client_only(tmp_path, system, caplog):
    created: list[str] = []

    async def body() -> None:
        first = _venv(CONFIG, tmp_path, system, created)
        await first.start()
        old = first.client_pid("rA")
        await first.leave()
        created.clear()
        second = _venv(CONFIG, tmp_path, system, created, client=["sleep", "61"])
        await second.start()
        assert created == [] and second.client_pid("rA") not in (None, old)
        assert old is not None and not is_running(process_record("c", "rA", old))
        await second.stop()

    with caplog.at_level(logging.INFO, logger="routeflow.vnet"):
        asyncio.run(body())
    assert _fates(caplog)["rA"].endswith("; RF-Client restarted: its command changed)")


def test_a_changed_rfvs_recreates_everything(tmp_path, system, caplog):
    created: list[str] = []

    async def body() -> None:
        first = _venv(CONFIG, tmp_path, system, created)
        await first.start()
        await first.leave()
        created.clear()
        other = dataclasses.replace(CONFIG, rfvs=dataclasses.replace(CONFIG.rfvs, controller="tcp:127.0.0.1:6633"))
        second = _venv(other, tmp_path, system, created)
        await second.start()
        assert created == ["rA", "rB", "rC"]
        await second.stop()
        assert system.empty()

    with caplog.at_level(logging.INFO, logger="routeflow.vnet"):
        asyncio.run(body())
    assert _fates(caplog)["rA"] == "VM rA: recreated (the RFVS bridge rfvs is planned differently)"


def test_a_record_without_plans_is_removed_whole(tmp_path, system):
    """A state file of an older routeflow (no plans) or of a bring-up that did not finish."""
    created: list[str] = []

    async def body() -> None:
        first = _venv(CONFIG, tmp_path, system, created)
        await first.start()
        await first.leave()
        record = ResourceLog.load(tmp_path / "vnet.json")
        record.meta.clear()
        record.save()
        created.clear()
        second = _venv(CONFIG, tmp_path, system, created)
        await second.start()
        assert created == ["rA", "rB", "rC"]
        await second.stop()
        assert system.empty()

    asyncio.run(body())
