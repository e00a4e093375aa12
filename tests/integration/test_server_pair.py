"""A server pair on etcd: the standby takes over from a killed active server, and the NIB
outlives an etcd member.

Two RF-Servers on rftest2's config share a one-member etcd on loopback; the first
is active, the second stands by on its own Unix socket. ``kill -9`` of the active
under a ping stream h1 -> h4: the standby takes the leader key when the lease
expires, restores the NIB, listens, and adopts the VMs the dead server left; the
controller and the RF-Clients find it at its address. No ping is lost, no flow is
sent to any switch (the new active starts from what the switches hold and finds
nothing to change), and verify is clean.

A three-member etcd cluster on loopback loses a member (the Raft leader, killed):
the NIB is still read and written, the election still works.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.scenarios import H4, PINGS, VMS, converged, flow_mods, stayed_up, stream_loss, vm_identity

from routeflow.harness import (
    CONVERGE_TIMEOUT,
    PAIR_ADDRESSES,
    PAIR_SECOND,
    PAIR_SECOND_ARGS,
    pair_stack,
    serving,
    wait_for,
)
from routeflow.server import etcd_local
from routeflow.server.etcd_local import LocalEtcd
from routeflow.server.etcd_store import EtcdStore
from routeflow.vnet.manager import cleanup_stale

pytestmark = pytest.mark.integration

#: Client ports of the tests' etcd members (loopback), apart from a `routeflow etcd start`'s.
PAIR_ETCD_PORT = 23890
CLUSTER_ETCD_PORT = 23990
#: The failover budget: the lease (1 s), etcd's expiry check (up to 0.5 s), the standby's poll.
FAILOVER_MAX_S = 3.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("server-pair")
    with LocalEtcd(run_dir / "etcd", members=1, base_port=PAIR_ETCD_PORT) as etcd:
        stack = pair_stack("rftest2", run_dir, etcd.endpoints)
        standby: subprocess.Popen[bytes] | None = None
        with stack:
            try:
                wait_for(stack.all_pairs_ok, CONVERGE_TIMEOUT, 0.2)
                stack.wait_verify_clean()
                standby = stack.spawn_server("server2", *PAIR_SECOND_ARGS)
                wait_for(lambda: "standby: server" in (run_dir / "server2.log").read_text(errors="replace"), 30, 0.1)
                yield stack, standby
            finally:
                # The stack stops its server (SIGTERM: the VMs go); the standby, if it
                # never took over, has nothing but itself to stop.
                if standby is not None and stack.server is not standby:
                    standby.send_signal(signal.SIGTERM)
                    standby.wait(30)
                # A test that failed between the kill and the takeover leaves the VMs to nobody.
                if stack.server is not None and stack.server.poll() is not None:
                    asyncio.run(cleanup_stale())
    # The killed server's socket, which nobody removed.
    for path in PAIR_ADDRESSES.split(","):
        if not serving(path.removeprefix("unix:")):
            Path(path.removeprefix("unix:")).unlink(missing_ok=True)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert not set(VMS) & set(namespaces), namespaces


def test_the_standby_takes_over_from_a_killed_active_server_and_loses_nothing(pair):
    stack, standby = pair
    adjacencies = converged(stack)
    sampled = time.monotonic()
    before = {vm: vm_identity(stack, vm) for vm in VMS}
    assert not serving(PAIR_SECOND), "the standby listens only once active"
    pinger = subprocess.Popen(["ip", "netns", "exec", "h1", "ping", "-n", "-c", str(PINGS), "-i", "0.01", "-W", "1",
                               H4], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert stack.server is not None
        stack.server.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        stack.server.wait(10)
        stack.server = standby  # the stack stops it at the end: it holds the VMs now
        wait_for(lambda: serving(PAIR_SECOND), 10, 0.01)
        failover = time.monotonic() - killed
        stack.wait_verify_clean(timeout=15, interval=0.05)
        clean = time.monotonic() - killed
        summary = pinger.communicate(timeout=PINGS * 0.01 + 30)[0]
    finally:
        pinger.kill()
        pinger.wait()
    sent, lost = stream_loss(summary)
    mods = flow_mods(stack)
    print(f"server pair failover (kill -9 of the active): serving after {failover:.2f} s, verify clean after "
          f"{clean:.2f} s, {lost} of {sent} pings lost (10 ms apart, h1 -> h4), flow mods sent: {mods}")
    assert failover <= FAILOVER_MAX_S
    assert lost == 0
    # The new active sent no switch anything: every flow was right.
    dpids = {f"{vm.dpid:#x}" for vm in stack.config.vms} | {f"{stack.config.rfvs.dpid:#x}"}
    assert mods == dict.fromkeys(dpids, 0)
    assert {vm: vm_identity(stack, vm) for vm in VMS} == before, "a VM was recreated"
    assert stayed_up(adjacencies, sampled) == []
    log = (stack.run_dir / "server2.log").read_text(errors="replace")
    assert "server second is active" in log
    restored = re.search(r"NIB restored from the store: (\d+) NIC mappings, (\d+) VMs, (\d+) installed tables", log)
    assert restored and restored.groups() == (str(sum(len(vm.interfaces) for vm in stack.config.vms)), "4", "5"), log
    assert "virtual environment up: 4 VMs on rfvs (4 adopted)" in log
    assert re.search(r"datapath 0x1 holds the \d+ flows and \d+ groups the previous server recorded", log), log
    # The RF-Clients found the new active at its address.
    status = stack.status(detail=False)
    assert all(vm["client_connected"] for vm in status["vms"])
    assert status["server"]["store"] == "etcd"
    assert status["server"]["listeners"][0]["address"] == f"unix:{PAIR_SECOND}"


def _raft_leader(etcd: LocalEtcd) -> str:
    """The name of the member that is the Raft leader."""
    for member in etcd.members:
        request = urllib.request.Request(f"{member.endpoint}/v3/maintenance/status", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=2) as reply:
            status = json.loads(reply.read())
        if status["leader"] == status["header"]["member_id"]:
            return member.name
    raise AssertionError("no leader")


def test_the_nib_survives_the_loss_of_an_etcd_member(tmp_path):
    with LocalEtcd(tmp_path / "etcd", members=3, base_port=CLUSTER_ETCD_PORT) as etcd:
        first = EtcdStore(etcd.endpoints, "first", ttl=1)
        second = EtcdStore(etcd.endpoints, "second", ttl=1)

        async def before() -> None:
            assert await first.acquire() == 1.0
            assert await second.acquire() is None
            await first.save({"mapping": b"m1", "vm/rA": b"a1"})

        asyncio.run(before())
        etcd.kill(_raft_leader(etcd))  # the worst member to lose: a new leader is elected
        wait_for(etcd.healthy, 10, 0.1)

        async def after() -> float:
            assert await second.load() == {"mapping": b"m1", "vm/rA": b"a1"}
            assert await first.keepalive() > 0
            await first.save({"vm/rA": b"a2", "dp/0000000000000001": b"t1"})
            assert await second.load() == {"mapping": b"m1", "vm/rA": b"a2", "dp/0000000000000001": b"t1"}
            # The election goes on on two members: the first's lease expires, the second takes over.
            stopped = time.monotonic()
            while await second.acquire() is None:
                await asyncio.sleep(0.05)
            taken = time.monotonic() - stopped
            assert await second.holder() == "second"
            await second.save({"vm/rA": b"a3"})
            with pytest.raises(Exception, match="no longer 'first'"):
                await first.save({"vm/rA": b"stale"})
            assert (await second.load())["vm/rA"] == b"a3"
            return taken

        taken = asyncio.run(after())
        print(f"etcd member lost: the NIB read and written on the other two; leadership moved in {taken:.2f} s")
        assert taken <= FAILOVER_MAX_S
    assert not Path(tmp_path / "etcd").exists()


FENCE_ETCD_PORT = 24190


def test_an_active_server_cut_off_from_etcd_stops_serving_before_its_lease_can_expire(tmp_path):
    """etcd frozen (SIGSTOP: no answer, as a partition looks): the active server fences itself
    within its lease and exits 1; once etcd answers again the standby takes over."""
    config = tmp_path / "routeflow.yaml"
    first, second = tmp_path / "a.sock", tmp_path / "b.sock"
    with LocalEtcd(tmp_path / "etcd", members=1, base_port=FENCE_ETCD_PORT) as etcd:
        config.write_text(json.dumps({
            "listen": [f"unix:{first}"], "manage_vms": False, "http": {"listen": "off"},
            "store": {"kind": "etcd", "endpoints": list(etcd.endpoints), "lease_ttl": 1,
                      "servers": [f"unix:{first}", f"unix:{second}"]},
            "vms": [{"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]}]}))
        argv = [sys.executable, "-m", "routeflow", "-v", "server", str(config), "--keys", str(tmp_path / "keys")]
        logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("a", "b")}  # noqa: SIM115
        active = subprocess.Popen([*argv, "--id", "a"], stdout=logs["a"], stderr=subprocess.STDOUT)
        standby = None
        try:
            wait_for(lambda: serving(str(first)), 30, 0.05)
            standby = subprocess.Popen([*argv, "--listen", f"unix:{second}", "--id", "b"], stdout=logs["b"],
                                       stderr=subprocess.STDOUT)
            wait_for(lambda: "standby: server a is active" in (tmp_path / "b.log").read_text(), 30, 0.1)
            member = etcd.processes["m0"]
            member.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                wait_for(lambda: not serving(str(first)), 5, 0.01)
                fenced_after = time.monotonic() - frozen
                assert active.wait(5) == 1  # EXIT_FENCED
                assert not serving(str(second))
            finally:
                member.send_signal(signal.SIGCONT)
            wait_for(lambda: serving(str(second)), 10, 0.05)
            print(f"etcd frozen: the active server stopped serving after {fenced_after:.2f} s; the standby took "
                  "over once etcd answered again")
            assert fenced_after <= 1.0  # the lease: it stopped before the standby could have begun
            assert "fenced: no keepalive confirmed the lease" in (tmp_path / "a.log").read_text()
        finally:
            for process in (active, standby):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
            for log in logs.values():
                log.close()


def test_routeflow_etcd_start_and_stop(tmp_path):
    """The documented command: a cluster of three on loopback, its endpoints printed; stop
    removes it and its data."""
    routeflow = [sys.executable, "-m", "routeflow", "etcd"]
    directory = tmp_path / "etcd"
    started = subprocess.run([*routeflow, "start", "--members", "3", "--port", "24290", "--dir", str(directory)],
                             capture_output=True, text=True, timeout=60)
    try:
        assert started.returncode == 0, started.stderr
        endpoints = started.stdout.strip().split(",")
        assert endpoints == ["http://127.0.0.1:24290", "http://127.0.0.1:24292", "http://127.0.0.1:24294"]
        pids = json.loads((directory / "members.json").read_text())["pids"]
        store = EtcdStore(tuple(endpoints), "s", ttl=1)

        async def roundtrip() -> dict[str, bytes]:
            assert await store.acquire() == 1.0
            await store.save({"mapping": b"m"})
            return await store.load()

        assert asyncio.run(roundtrip()) == {"mapping": b"m"}
    finally:
        stopped = subprocess.run([*routeflow, "stop", "--dir", str(directory)], capture_output=True, text=True,
                                 timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert not directory.exists()
    assert not [pid for pid in pids.values() if etcd_local._is_etcd(pid)]  # gone, or a zombie of init's
    assert subprocess.run([*routeflow, "stop", "--dir", str(directory)], capture_output=True).returncode == 1
