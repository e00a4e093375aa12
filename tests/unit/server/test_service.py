"""The RF-Server's I/O shell, without sockets: what it keeps for a peer is bounded."""

from routeflow.protocol import codec
from routeflow.protocol.messages import StatusReply
from routeflow.server.service import Limits, Peer


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
