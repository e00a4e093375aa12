"""The record of created resources: persistence, teardown order, process identity."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from routeflow.harness import wait_for
from routeflow.vnet import VnetError, resources
from routeflow.vnet.resources import (
    Resource,
    ResourceLog,
    is_running,
    missing,
    process_record,
    read_pidfile,
    running_record,
    stop_process,
    teardown,
    wait_exit,
)


def test_log_is_saved_on_every_change_and_reloads(tmp_path):
    path = tmp_path / "state" / "vnet.json"
    log = ResourceLog(path, meta={"topology": "/x.yaml"})
    a = log.add(Resource("netns", "h1", "h1"))
    log.add(Resource("link", "s1-p1", "s1-h1"))
    assert [r.name for r in ResourceLog.load(path).resources] == ["h1", "s1-p1"]
    log.update(a, Resource("netns", "h1", "other"))
    log.discard(log.resources[1])
    again = ResourceLog.load(path)
    assert again.resources == [Resource("netns", "h1", "other")] and again.meta == {"topology": "/x.yaml"}
    assert not list(path.parent.glob("*.tmp"))
    log.remove_file()
    assert not path.exists()


def test_unreadable_state_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(VnetError, match="cannot read state file"):
        ResourceLog.load(path)
    path.write_text('{"resources": [{"kind": "netns"}]}')
    with pytest.raises(VnetError):
        ResourceLog.load(path)


def test_teardown_order_owner_filter_and_failures(monkeypatch):
    removed = []

    async def fake_remove(resource):
        if resource.name == "stuck":
            raise OSError("busy")
        removed.append((resource.kind, resource.name))

    monkeypatch.setattr(resources, "_remove", fake_remove)
    log = ResourceLog()
    for kind, name, owner in [("dir", "/run/a", "a"), ("netns", "a", "a"), ("link", "a-e1", "a"),
                              ("port", "a-e1", "a"), ("bridge", "rfvs", "rfvs"), ("link", "a-e2", "a"),
                              ("process", "p1", "a"), ("process", "p2", "a"), ("netns", "stuck", "b")]:
        log.add(Resource(kind, name, owner))
    assert asyncio.run(teardown(log, owner="a", kinds=("process",))) == []
    assert removed == [("process", "p2"), ("process", "p1")]
    removed.clear()
    failures = asyncio.run(teardown(log))
    assert removed == [("port", "a-e1"), ("bridge", "rfvs"), ("link", "a-e2"), ("link", "a-e1"),
                       ("netns", "a"), ("dir", "/run/a")]
    assert failures == ["netns stuck: busy"]
    assert log.resources == [Resource("netns", "stuck", "b")]


def _sleeper(*extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *extra])


def test_process_identity_and_stop():
    proc = _sleeper()
    try:
        record = process_record("client:rA", "rA", proc.pid)
        assert is_running(record)
        # Same pid, another start time: a reused pid is never signalled.
        impostor = Resource("process", "x", "rA", proc.pid, record.start_time - 1)
        assert not is_running(impostor)
        asyncio.run(stop_process(impostor))
        assert proc.poll() is None
        asyncio.run(stop_process(record))
        assert proc.wait(timeout=5) is not None
        assert not is_running(record)
    finally:
        proc.kill()
        proc.wait()


def test_process_found_by_pidfile_only_if_it_names_it(tmp_path):
    pidfile = tmp_path / "zebra.pid"
    proc = _sleeper("-i", str(pidfile))
    other = _sleeper()
    try:
        pidfile.write_text(f"{proc.pid}\n")
        assert read_pidfile(str(pidfile)) == proc.pid
        assert is_running(Resource("process", str(pidfile), "rA"))
        pidfile.write_text(f"{other.pid}\n")
        assert not is_running(Resource("process", str(pidfile), "rA"))
        pidfile.write_text(f"{proc.pid}\n")
        asyncio.run(stop_process(Resource("process", str(pidfile), "rA")))
        assert proc.wait(timeout=5) is not None and other.poll() is None
    finally:
        for p in (proc, other):
            p.kill()
            p.wait()
    assert read_pidfile(str(tmp_path / "missing.pid")) is None


def test_daemon_restarted_in_place_is_found_by_its_pidfile(tmp_path):
    """zebra killed and started again by hand: the record's pid is gone, the pidfile
    names the new process, and stopping the VM stops that one."""
    pidfile = tmp_path / "zebra.pid"
    first = _sleeper("-i", str(pidfile))
    record = process_record(str(pidfile), "rA", first.pid)
    first.kill()
    first.wait()
    again = _sleeper("-i", str(pidfile))
    try:
        assert not is_running(record)  # no pidfile written yet: the dead process is all there is
        # A daemon writes its pidfile once it runs: by then its command line is its own.
        wait_for(lambda: str(pidfile).encode() in Path(f"/proc/{again.pid}/cmdline").read_bytes(), 5, 0.01)
        pidfile.write_text(f"{again.pid}\n")
        assert is_running(record)
        asyncio.run(stop_process(record))
        assert again.wait(timeout=5) is not None
    finally:
        again.kill()
        again.wait()


def test_stop_process_escalates_to_sigkill():
    proc = subprocess.Popen([sys.executable, "-c",
                             "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        asyncio.run(stop_process(process_record("stubborn", "x", proc.pid), timeout=0.3))
        assert proc.wait(timeout=5) == -9  # SIGTERM was ignored: only the SIGKILL ends it
    finally:
        proc.kill()
        proc.wait()


def test_running_record_follows_a_daemon_restarted_in_place(tmp_path):
    pidfile = tmp_path / "bird.pid"
    first = _sleeper("-i", str(pidfile))
    record = process_record(str(pidfile), "rB", first.pid)
    assert running_record(record) is record
    first.kill()
    first.wait()
    assert running_record(record) is None
    again = _sleeper("-i", str(pidfile))
    try:
        wait_for(lambda: str(pidfile).encode() in Path(f"/proc/{again.pid}/cmdline").read_bytes(), 5, 0.01)
        pidfile.write_text(f"{again.pid}\n")
        assert running_record(record) == process_record(str(pidfile), "rB", again.pid)
    finally:
        again.kill()
        again.wait()


def test_wait_exit_waits_for_that_process_alone():
    proc = _sleeper()
    try:
        record = process_record("client:rA", "rA", proc.pid)
        # A pid reused by another process (another start time) is not waited on.
        impostor = Resource("process", "client:rA", "rA", proc.pid, record.start_time - 1)
        asyncio.run(asyncio.wait_for(wait_exit(impostor), 1))

        async def waiting() -> int | None:
            asyncio.get_running_loop().call_later(0.2, proc.kill)
            await asyncio.wait_for(wait_exit(record), 5)
            return proc.poll()  # what wait_exit waited for: the process is dead

        assert asyncio.run(waiting()) == -9
    finally:
        proc.kill()
        proc.wait()
    asyncio.run(asyncio.wait_for(wait_exit(record), 1))  # gone: at once


def test_missing_names_what_no_longer_exists(tmp_path, monkeypatch):
    async def vsctl(*args):
        return "rA-eth1\nrfvs\n" if args == ("--bare", "--columns=name", "list", "Port") else ""  # get-ssl: none

    async def existing_links(names, namespace=None):
        return [n for n in names if n == "rA-eth1"]

    async def list_bridges():
        return ["rfvs"]

    monkeypatch.setattr(resources.ovs, "vsctl", vsctl)
    monkeypatch.setattr(resources.ovs, "list_bridges", list_bridges)
    monkeypatch.setattr(resources.links, "existing_links", existing_links)
    monkeypatch.setattr(resources.links, "netns_exists", lambda name: name == "rA")
    proc = _sleeper()
    try:
        present = [Resource("netns", "rA", "rA"), Resource("link", "rA-eth1", "rA"), Resource("port", "rA-eth1", "rA"),
                   Resource("bridge", "rfvs", "rfvs"), Resource("dir", str(tmp_path), "rA"),
                   process_record("client:rA", "rA", proc.pid)]
        assert asyncio.run(missing(present)) == []
        gone = [Resource("netns", "rB", "rB"), Resource("link", "rB-eth1", "rB"), Resource("port", "rB-eth1", "rB"),
                Resource("bridge", "other", "rfvs"), Resource("ssl", "openvswitch", "rfvs"),
                Resource("dir", str(tmp_path / "gone"), "rB"),
                Resource("process", "client:rB", "rB", proc.pid, process_record("x", "rB", proc.pid).start_time - 1)]
        assert asyncio.run(missing(gone)) == [f"{r.kind} {r.name}" for r in gone]
    finally:
        proc.kill()
        proc.wait()
