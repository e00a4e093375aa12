"""The server link against a fake RF-Server on a unix socket: handshake, reconnect, goodbye."""

from __future__ import annotations

import queue
import socket
import threading
import time

import pytest

from routeflow.controller.link import ServerLink
from routeflow.protocol import codec
from routeflow.protocol.codec import RemoteProtocolError
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    DatapathLeave,
    Goodbye,
    Hello,
    StatsRequest,
    Welcome,
)
from routeflow.protocol.transport import Address


class FakeServer:
    """Accepts one peer at a time, answers hello with welcome, records what it gets."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.peer = socket.socket()  # replaced by the accepted peer
        self.received: queue.Queue = queue.Queue()
        self.connections = 0

    def listen(self) -> None:
        self.listener.bind(self.path)
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                peer, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.peer = peer
            conn = codec.Connection()
            while True:
                try:
                    data = peer.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                for msg in conn.receive_data(data):
                    if isinstance(msg, Hello):
                        peer.sendall(codec.encode(Welcome(PROTOCOL_VERSION, (7,))))
                    self.received.put(msg)

    def send(self, msg) -> None:
        self.peer.sendall(codec.encode(msg))

    def drop_peer(self) -> None:
        self.peer.shutdown(socket.SHUT_RDWR)

    def expect(self, kind, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            msg = self.received.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(msg, kind):
                return msg

    def close(self) -> None:
        self.listener.close()
        self.peer.close()


@pytest.fixture
def server(tmp_path):
    srv = FakeServer(str(tmp_path / "server.sock"))
    yield srv
    srv.close()


def make_link(server, on_message=None):
    welcomes: queue.Queue = queue.Queue()
    messages: queue.Queue = queue.Queue()
    link = ServerLink(Address("unix", server.path), "ctl", welcomes.put, on_message or messages.put,
                      min_delay=0.05, max_delay=0.2)
    return link, welcomes, messages


def test_connects_once_the_server_appears_and_delivers_messages(server):
    link, welcomes, messages = make_link(server)
    assert not link.send(DatapathLeave(1)), "nothing to send on before connecting"
    link.start()
    try:
        time.sleep(0.3)  # a few failed attempts first
        server.listen()
        assert welcomes.get(timeout=5) == Welcome(PROTOCOL_VERSION, (7,))
        hello = server.expect(Hello)
        assert (hello.role, hello.name) == ("controller", "ctl")
        server.send(StatsRequest(3))
        assert messages.get(timeout=5) == StatsRequest(3)
        assert link.send(DatapathLeave(1))
        assert server.expect(DatapathLeave) == DatapathLeave(1)
    finally:
        link.stop()
    assert server.expect(Goodbye).reason == "controller stopping"


def test_reconnects_after_the_server_drops_it(server):
    server.listen()
    link, welcomes, _ = make_link(server)
    link.start()
    try:
        welcomes.get(timeout=5)
        server.drop_peer()
        welcomes.get(timeout=5)
        assert server.connections == 2
    finally:
        link.stop()


def test_protocol_error_says_goodbye_and_reconnects(server):
    server.listen()

    def on_message(msg):
        raise RemoteProtocolError(f"unexpected {type(msg).__name__}")

    link, welcomes, _ = make_link(server, on_message)
    link.start()
    try:
        welcomes.get(timeout=5)
        server.send(StatsRequest(1))
        assert "unexpected StatsRequest" in server.expect(Goodbye).reason
        welcomes.get(timeout=5)
    finally:
        link.stop()


def test_a_handler_bug_does_not_end_the_link(server):
    server.listen()
    link, welcomes, _ = make_link(server, lambda msg: 1 / 0)
    link.start()
    try:
        welcomes.get(timeout=5)
        server.send(StatsRequest(1))
        welcomes.get(timeout=5)
    finally:
        link.stop()
    assert not link.connected


def test_goodbye_even_when_stop_begins_while_a_message_is_handled(server):
    """The receive loop must not drop the session between stop()'s flag and its goodbye."""
    server.listen()
    handled = threading.Event()

    def on_message(msg):
        link._stop.set()  # the moment stop() has raised its flag, before it says goodbye
        handled.set()

    link, welcomes, _ = make_link(server, on_message)
    link.start()
    welcomes.get(timeout=5)
    server.send(StatsRequest(1))
    assert handled.wait(5)
    time.sleep(0.1)  # the receive loop runs on past the handler
    link.stop()
    assert server.expect(Goodbye).reason == "controller stopping"
