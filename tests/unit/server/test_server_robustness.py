"""The real RF-Server process against misbehaving peers: it closes them with a
reason and carries on serving everyone else. It listens on a Unix socket and keeps
its keys in the test's own directory: no root, no switch, no network."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from routeflow.config.schema import Limits
from routeflow.harness import wait_for
from routeflow.model import Fib, Interface, Neighbour, NextHop, Route
from routeflow.operator_client import OperatorClient
from routeflow.protocol import auth, codec
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    FibSnapshot,
    Goodbye,
    Hello,
    Proof,
    StatusRequest,
    TableMod,
    Welcome,
)
from routeflow.protocol.transport import BlockingSession, parse_address

#: What an operator may leave unread here: small, so the memory bound below is tight.
OPERATOR_UNREAD_MIB = 16
#: How long a peer has to say hello: short, so a test can wait for it.
HANDSHAKE_TIMEOUT = 2.0


@dataclass
class Server:
    """A running RF-Server: where it listens, its log, its process, and its peers' keys."""

    address: str
    log: Path
    proc: subprocess.Popen[bytes]
    keys: Path

    def session(self, role: str, name: str) -> BlockingSession:
        return BlockingSession(parse_address(self.address), role, name, keys=self.keys)  # type: ignore[arg-type]

    def status(self) -> dict:
        return OperatorClient(self.address, keys=self.keys).status()


@pytest.fixture()
def server(tmp_path: Path):
    sock = tmp_path / "rf.sock"
    config = {
        "manage_vms": False,
        "listen": [f"unix:{sock}"],
        "http": {"listen": "off"},  # a unit test needs no port of this host's
        "limits": {"unread_mib": {"operator": OPERATOR_UNREAD_MIB}, "handshake_timeout": HANDSHAKE_TIMEOUT},
        "vms": [{"name": "rA", "dpid": 1, "engine": "none",
                 "interfaces": [{"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]}]}],
    }
    path = tmp_path / "routeflow.yaml"
    path.write_text(yaml.safe_dump(config))
    keys = tmp_path / "keys"
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "routeflow", "-v", "server", str(path), "--keys", str(keys)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=20, interval=0.05)
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        yield Server(f"unix:{sock}", tmp_path / "server.log", proc, keys)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def raw_connect(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    for _ in range(500):
        try:
            s.connect(parse_address(address).host)
            return s
        except BlockingIOError:  # the listen backlog is full: the server has yet to accept
            time.sleep(0.01)
    raise TimeoutError("the server accepts no connection")


def read_all(s: socket.socket) -> list:
    conn, msgs = codec.Connection(), []
    while True:
        data = s.recv(65536)
        if not data:
            return msgs
        msgs += conn.receive_data(data)


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\n\r\n",                       # absurd frame length
    struct.pack("!I", 3) + b"\xc1\xc1\xc1",          # undecodable msgpack
    codec.encode(FibSnapshot(Fib())),                 # no hello first
    codec.encode(Hello(PROTOCOL_VERSION + 7, "client", "rA", "00" * 16)),  # wrong version
])
def test_malformed_peer_is_closed_with_a_reason_and_server_carries_on(server, payload):
    s = raw_connect(server.address)
    s.sendall(payload)
    msgs = read_all(s)
    assert msgs and isinstance(msgs[-1], Goodbye) and msgs[-1].reason
    assert server.proc.poll() is None
    assert server.status()["vms"][0]["name"] == "rA"
    assert "closing peer" in server.log.read_text()


def test_unexpected_message_for_role_closes_only_that_peer(server):
    bad = server.session("client", "rA")
    good = server.session("operator", "cli")
    bad.send(TableMod(1))
    reply = bad.receive()
    assert isinstance(reply, Goodbye) and "unexpected TableMod" in reply.reason
    assert server.proc.poll() is None
    assert server.status()["controller_connected"] is False
    good.close()


def test_unknown_vm_is_refused(server):
    s = raw_connect(server.address)
    s.sendall(codec.encode(Hello(PROTOCOL_VERSION, "client", "nosuchvm", "00" * 16)))
    msgs = read_all(s)
    assert isinstance(msgs[-1], Goodbye) and "unknown VM" in msgs[-1].reason


def test_snapshot_then_status_shows_routes(server):
    client = server.session("client", "rA")
    assert isinstance(client.welcome, Welcome)
    fib = Fib((Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",)),),
              (Route("172.31.1.0/24", (NextHop("eth1"),), proto="kernel"),))
    client.send(FibSnapshot(fib))
    vm = wait_for(lambda: next((v for v in server.status()["vms"] if v["synced"]), None), timeout=5, interval=0.05)
    assert vm["client_connected"] and [r["prefix"] for r in vm["routes"]] == ["172.31.1.0/24"]
    client.close()


@pytest.mark.parametrize("field, fib", [
    ("an interface address", Fib((Interface("eth1", "02:00:00:00:00:01", True, ("garbage",)),))),
    ("a prefix", Fib(routes=(Route("10.0.0.0/33", (NextHop("eth1"),)),))),
    ("a gateway", Fib(routes=(Route("10.0.0.0/8", (NextHop("eth1", "10.0.0.256"),)),))),
    ("a MAC", Fib(neighbours=(Neighbour("eth1", "172.31.1.2", "02:00:00:00:00"),))),
    ("an interface name", Fib(routes=(Route("10.0.0.0/8", (NextHop("-eth1"),)),))),
])  # fmt: skip
def test_a_bad_value_closes_its_client_before_it_reaches_the_core(server, field, fib):
    """What a client says is checked as it is decoded: the server closes it with the
    reason, and nothing of it reaches the VM's state or its switch."""
    client = server.session("client", "rA")
    client.send(FibSnapshot(fib))
    reply = client.receive()
    assert isinstance(reply, Goodbye) and "undecodable message" in reply.reason, (field, reply)
    assert server.proc.poll() is None
    vm = server.status()["vms"][0]
    assert not vm["synced"] and vm["route_count"] == 0


def test_what_an_unknown_peer_may_hold_is_bounded(server):
    """Before its hello a peer may send no more than a hello, for no longer than the
    handshake deadline, and only so many connections may be open at once; a legitimate
    peer is served throughout."""
    limits = Limits()
    # A frame far larger than any hello: refused as its length arrives, not buffered.
    big = raw_connect(server.address)
    big.sendall(struct.pack("!I", codec.HELLO_MAX_FRAME + 1) + b"x" * 1000)
    msgs = read_all(big)
    assert isinstance(msgs[-1], Goodbye) and "exceeds" in msgs[-1].reason
    # Connections that never say hello, past the limit: the ones over it are refused at once...
    idle = [raw_connect(server.address) for _ in range(limits.max_connections + 20)]
    refused = 0
    for s in idle[-20:]:
        msgs = read_all(s)
        refused += isinstance(msgs[-1], Goodbye) and "too many connections" in msgs[-1].reason
    assert refused == 20
    # ... and the rest are closed at the handshake deadline: each read waits for it.
    for s in idle[:5]:
        s.settimeout(HANDSHAKE_TIMEOUT + 5)
    closed = [read_all(s) for s in idle[:5]]
    assert all(isinstance(m[-1], Goodbye) and "no hello within" in m[-1].reason for m in closed), closed
    for s in idle:
        s.close()
    assert server.proc.poll() is None
    assert server.status()["vms"][0]["name"] == "rA"


def test_an_impostor_is_refused_counted_and_displaces_no_one(server, tmp_path):
    """A process that says it is rA's client but holds another key is refused before
    it is anyone: rA's real client stays connected, and status counts the refusal."""
    real = server.session("client", "rA")
    real.send(FibSnapshot(Fib()))
    stolen = tmp_path / "stolen"
    auth.ensure_keys(stolen, ["client-rA", "controller"])  # keys of the right names, not the right keys
    for role, name in (("client", "rA"), ("controller", "ctl")):
        with pytest.raises(codec.RemoteProtocolError, match="could not prove it holds our key"):
            BlockingSession(parse_address(server.address), role, name, keys=stolen)  # type: ignore[arg-type]
    # One that skips the server's proof and answers with garbage is refused too.
    s = raw_connect(server.address)
    s.sendall(codec.encode(Hello(PROTOCOL_VERSION, "client", "rA", "11" * 16)))
    s.sendall(codec.encode(Proof("22" * 32)))
    msgs = read_all(s)
    assert isinstance(msgs[-1], Goodbye) and "authentication failed for client 'rA'" in msgs[-1].reason
    status = server.status()
    assert status["server"]["auth_failures"] == 1
    assert status["vms"][0]["client_connected"]
    assert "did not prove it holds that key" in server.log.read_text()
    real.close()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


#: What the probes below may add to the server's resident memory: the unread bytes one
#: operator may leave, and slack for the allocator and the interpreter.
PROBE_GROWTH_MIB = OPERATOR_UNREAD_MIB + 48


def test_floods_leave_the_server_within_its_memory_bound(server):
    """5,000 connections that never say hello, an operator that asks without ever
    reading, random bytes: the server's memory stays within a stated bound of where it
    started, and a legitimate peer is served all along."""
    assert server.status()["vms"][0]["name"] == "rA"
    start = _rss_mib(server.proc.pid)
    peak = start
    # 5,000 connections in waves as large as the server allows at once; each says nothing.
    limits = Limits()
    for _ in range(5000 // limits.max_connections + 1):
        wave = [raw_connect(server.address) for _ in range(limits.max_connections)]
        for s in wave:
            # Half a length prefix, then silence. The previous wave's closes may not all have
            # reached the server yet: one over its limit is closed at once, as it must be.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(b"\0\0")
        peak = max(peak, _rss_mib(server.proc.pid))
        for s in wave:
            s.close()
    # An operator that asks for status 100,000 times and reads nothing (once the server
    # has seen the last wave go: until then it is at its connection limit).
    deadline = time.monotonic() + 10
    while True:
        try:
            greedy = server.session("operator", "greedy")
            break
        except codec.RemoteProtocolError as exc:
            assert "too many connections" in str(exc) and time.monotonic() < deadline, exc
            time.sleep(0.1)
    request = codec.encode(StatusRequest(1, detail=True))
    greedy.sock.settimeout(30)
    dropped = False
    try:
        for _ in range(100):
            greedy.sock.sendall(request * 1000)
            peak = max(peak, _rss_mib(server.proc.pid))
    except OSError:
        dropped = True  # the server gave up on it: what it was sent stays bounded
    def greedy_dropped() -> bool:
        """Whether the server has given up on the greedy operator; its memory meanwhile."""
        nonlocal peak
        peak = max(peak, _rss_mib(server.proc.pid))
        return "dropping operator greedy: it left more than" in server.log.read_text()

    wait_for(greedy_dropped, timeout=30, interval=0.1)  # while the server works through what it was asked
    greedy.close()
    # Random bytes from a stranger.
    noise = raw_connect(server.address)
    noise.sendall(os.urandom(4096))
    noise.close()
    assert server.proc.poll() is None
    assert server.status()["vms"][0]["name"] == "rA"
    assert peak - start < PROBE_GROWTH_MIB, f"server grew from {start:.0f} to {peak:.0f} MiB"
    assert "dropping operator greedy: it left more than" in server.log.read_text()
    print(f"server RSS {start:.0f} MiB, peak {peak:.0f} MiB; greedy operator's sends failed: {dropped}")
