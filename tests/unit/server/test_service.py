"""The RF-Server's I/O shell, without sockets: what it keeps for a peer is bounded."""

import asyncio

from tests.waiting import until

from routeflow.config.loader import parse_config
from routeflow.config.schema import Limits
from routeflow.protocol import auth, codec
from routeflow.protocol.messages import Goodbye, StatusReply
from routeflow.protocol.transport import AsyncSession, Credential, parse_address
from routeflow.server.peers import Peer
from routeflow.server.service import RFServer


class FakeTransport:
    """A transport whose peer reads nothing: everything written stays queued."""

    def __init__(self) -> None:
        self.queued = 0
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.queued

    def abort(self) -> None:
        self.aborted = True


class FakeWriter:
    def __init__(self) -> None:
        self.transport = FakeTransport()

    def is_closing(self) -> bool:
        return self.transport.aborted

    def write(self, data: bytes) -> None:
        self.transport.queued += len(data)


def test_a_peer_that_does_not_read_is_dropped_once_its_queue_passes_the_limit(caplog):
    writer = FakeWriter()
    peer = Peer("operator", "cli", writer, max_unread=Limits().unread["operator"])
    reply = StatusReply(1, {"padding": "x" * 1_000_000})
    sent = 0
    while not writer.transport.aborted:
        peer.send(reply)
        sent += 1
        assert sent < 1000, "never dropped"
    assert writer.transport.queued <= Limits().unread["operator"] + len(codec.encode(reply))
    assert "left more than" in caplog.text
    peer.send(reply)  # nothing more is queued for a dropped peer
    assert writer.transport.queued <= Limits().unread["operator"] + len(codec.encode(reply))


def test_a_silent_peer_is_dropped_and_one_that_answers_pings_is_kept(tmp_path):
    """Keepalives: the server pings every peer and drops one it has not heard from for
    ``idle_timeout`` (a half-open connection would hold a VM's place forever)."""
    address = f"unix:{tmp_path}/rf.sock"
    config = parse_config({"listen": [address], "manage_vms": False, "vms": [
        {"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]}]})
    keys = tmp_path / "keys"

    async def scenario() -> None:
        server = RFServer(config, Limits(keepalive=0.1, idle_timeout=0.5), keys=keys)
        await server.start()
        try:
            live = await AsyncSession.open(parse_address(address), "operator", "cli", Credential(key=auth.load_key(keys, "operator")))
            answering = asyncio.create_task(live.receive())  # answers every ping while it waits
            silent = await AsyncSession.open(parse_address(address), "client", "rA", Credential(key=auth.load_key(keys, "client-rA")))
            assert "rA" in server.clients
            # Dropped once silent for longer than idle_timeout (reading would answer its pings) ...
            await until(lambda: "rA" not in server.clients)
            goodbye = await asyncio.wait_for(silent.receive(), 1)  # ... with a reason ...
            assert isinstance(goodbye, Goodbye) and "not heard from" in goodbye.reason
            # ... while the operator, connected as long, is kept.
            assert not answering.done() and any(p.role == "operator" for p in server._peers)
            answering.cancel()
            for session in (live, silent):
                await session.close()
        finally:
            await server.stop()

    asyncio.run(scenario())
