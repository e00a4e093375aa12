"""routeflow.client.agent against a fake server, with a fake FIB source and a fake host."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from routeflow.client import agent as agent_mod
from routeflow.client.agent import Agent
from routeflow.model import Fib, Interface, NextHop, Route
from routeflow.protocol import codec, mapping
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    AnyMessage,
    FibDelta,
    FibSnapshot,
    Goodbye,
    Hello,
    LinkState,
    Message,
    PortMapped,
    ResolveNextHops,
    SnapshotRequest,
    Welcome,
)
from routeflow.protocol.transport import Address, Credential
from routeflow.server.handshake import Handshake

from .support import run_async

FIB = Fib(
    interfaces=(Interface("eth1", "02:00:00:00:00:01", True, ("10.0.1.1/24",)),),
    routes=(Route("10.0.1.0/24", (NextHop("eth1"),), proto="kernel"),),
)
FRESH = Fib(routes=(Route("10.9.0.0/16", (), "blackhole"),))
NICS = {"eth1": "02:00:00:00:00:01", "eth2": "02:00:00:00:00:02"}
TIMEOUT = 5.0


class FakeWatcher:
    def __init__(self) -> None:
        self.current = FIB
        self.pending: asyncio.Queue[FibSnapshot | FibDelta] = asyncio.Queue()

    async def updates(self) -> AsyncIterator[FibSnapshot | FibDelta]:
        yield FibSnapshot(self.current)
        while True:
            yield await self.pending.get()

    def fib(self) -> Fib:
        return self.current

    def nics(self) -> dict[str, str]:
        return NICS


class FakeHost:
    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.link_states: list[tuple[str, bool]] = []
        self.solicited: list[tuple[str, str]] = []

    async def fresh_fib(self) -> Fib:
        return FRESH

    async def set_link_state(self, ifname: str, up: bool) -> None:
        self.link_states.append((ifname, up))

    def send_frame(self, ifname: str, frame: bytes) -> None:
        self.frames.put_nowait((ifname, frame))

    def solicit(self, ifname: str, address: str) -> None:
        self.solicited.append((ifname, address))


#: VM rA's key, as the server and the client would each hold it.
KEY = bytes(range(32))


class Peer:
    """The server's end of one client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = codec.Connection()
        self.pending: list[AnyMessage] = []

    async def receive(self) -> AnyMessage:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(1 << 16), TIMEOUT)
            if not data:
                raise ConnectionError("client closed")
            self.pending.extend(self.conn.receive_data(data))
        return self.pending.pop(0)

    def send(self, msg: Message) -> None:
        self.writer.write(codec.encode(msg))

    async def handshake(self) -> Hello:
        """Challenge the client, check its proof with rA's key, welcome it."""
        handshake = Handshake(lambda identity: KEY)
        challenge, _ = handshake.receive(await self.receive())
        assert challenge is not None
        self.send(challenge)
        _, hello = handshake.receive(await self.receive())  # raises unless the proof is rA's key's
        assert hello is not None
        self.send(Welcome(PROTOCOL_VERSION))
        return hello


class FakeServer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.peers.put_nowait(Peer(reader, writer))

        self.server = await asyncio.start_unix_server(accept, str(self.path))

    async def peer(self) -> Peer:
        return await asyncio.wait_for(self.peers.get(), TIMEOUT)

    async def session(self) -> tuple[Peer, AnyMessage]:
        """The next client, welcomed, with the first message it sends (its snapshot)."""
        peer = await self.peer()
        await peer.handshake()
        return peer, await peer.receive()

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture(autouse=True)
def fast_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_mod, "MAPPING_INTERVAL", 0.05)
    monkeypatch.setattr(agent_mod, "BACKOFF_MIN", 0.01)


async def _frame_for(host: FakeHost) -> tuple[str, mapping.MappingPacket]:
    ifname, frame = await asyncio.wait_for(host.frames.get(), TIMEOUT)
    return ifname, mapping.decode(frame)


@contextlib.asynccontextmanager
async def _agent(tmp_path: Path) -> AsyncIterator[tuple[FakeServer, FakeWatcher, FakeHost, asyncio.Task[None]]]:
    """An agent for VM rA running against a fake server, both stopped at the end."""
    server = FakeServer(tmp_path / "server.sock")
    await server.start()
    watcher, host = FakeWatcher(), FakeHost()
    task = asyncio.create_task(Agent("rA", Address("unix", str(server.path)), watcher, host, Credential(key=KEY)).run())
    try:
        yield server, watcher, host, task
    finally:
        await _stop(task, server)


async def _stop(task: asyncio.Task[None], server: FakeServer) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    server.stop()


@run_async
async def test_snapshot_then_deltas_and_requests(tmp_path: Path) -> None:
    async with _agent(tmp_path) as (server, watcher, host, _):
        peer = await server.peer()
        hello = await peer.handshake()
        assert (hello.role, hello.name) == ("client", "rA")
        assert await peer.receive() == FibSnapshot(FIB)
        delta = FibDelta(routes_del=("10.0.1.0/24",))
        watcher.pending.put_nowait(delta)
        assert await peer.receive() == delta
        peer.send(SnapshotRequest(42))
        assert await peer.receive() == FibSnapshot(FRESH, 42)
        peer.send(LinkState("eth1", False))
        peer.send(ResolveNextHops((("eth2", "10.0.2.9"), ("eth2", "fe80::9"))))
        peer.send(SnapshotRequest(43))  # ordered after the link state and the resolution
        await peer.receive()
        assert host.link_states == [("eth1", False)]
        assert host.solicited == [("eth2", "10.0.2.9"), ("eth2", "fe80::9")]


@run_async
async def test_mapping_packets_until_mapped(tmp_path: Path) -> None:
    async with _agent(tmp_path) as (server, _, host, _):
        peer = await server.peer()
        await peer.handshake()
        seen = {(await _frame_for(host)) for _ in range(4)}
        assert seen == {
            ("eth1", mapping.MappingPacket("rA", "eth1")),
            ("eth2", mapping.MappingPacket("rA", "eth2")),
        }
        peer.send(PortMapped("eth1", 1, 3))
        await peer.writer.drain()
        await asyncio.sleep(0.1)
        while not host.frames.empty():
            host.frames.get_nowait()
        assert {(await _frame_for(host))[0] for _ in range(3)} == {"eth2"}


@run_async
async def test_reconnects_with_a_new_snapshot_and_remaps(tmp_path: Path) -> None:
    async with _agent(tmp_path) as (server, watcher, host, _):
        peer, _ = await server.session()
        peer.send(PortMapped("eth1", 1, 3))
        peer.send(PortMapped("eth2", 1, 4))
        watcher.current = FRESH
        peer.send(Goodbye("restarting"))
        peer, snapshot = await server.session()
        assert snapshot == FibSnapshot(FRESH)
        while not host.frames.empty():
            host.frames.get_nowait()
        assert {(await _frame_for(host))[0] for _ in range(4)} == {"eth1", "eth2"}
        peer.writer.close()  # the server vanishes without a word
        peer, snapshot = await server.session()
        assert isinstance(snapshot, FibSnapshot)


@run_async
async def test_protocol_error_says_goodbye_and_reconnects(tmp_path: Path) -> None:
    async with _agent(tmp_path) as (server, _, _, _):
        peer, _ = await server.session()
        peer.send(FibDelta())  # not something a server sends
        reply = await peer.receive()
        assert isinstance(reply, Goodbye) and "unexpected FibDelta" in reply.reason
        peer, snapshot = await server.session()
        assert snapshot == FibSnapshot(FIB)


@run_async
async def test_retries_until_the_server_appears(tmp_path: Path) -> None:
    path = tmp_path / "server.sock"
    agent = Agent("rA", Address("unix", str(path)), FakeWatcher(), FakeHost(), Credential(key=KEY))
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0.2)  # a few failed attempts
    server = FakeServer(path)
    await server.start()
    try:
        _, snapshot = await server.session()
        assert snapshot == FibSnapshot(FIB)
    finally:
        await _stop(task, server)


@run_async
async def test_cancelling_says_goodbye(tmp_path: Path) -> None:
    async with _agent(tmp_path) as (server, _, _, task):
        peer, _ = await server.session()
        task.cancel()
        assert await peer.receive() == Goodbye("client shutting down")
        assert await asyncio.gather(task, return_exceptions=True) != [None]  # cancelled


def test_main_rejects_a_bad_server_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        agent_mod.main(["--vm", "rA", "--server", "nowhere"])
    assert exit_info.value.code == 2
    assert "expected unix:PATH, tcp:HOST:PORT or tls:HOST:PORT" in capsys.readouterr().err
