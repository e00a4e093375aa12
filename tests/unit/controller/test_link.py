"""The server link against a fake RF-Server on a unix socket: handshake, reconnect, goodbye."""

from __future__ import annotations

import logging
import queue
import threading
import time

import pytest

from routeflow.controller.link import ServerLink
from routeflow.harness import wait_for
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
from tests.fakeserver import FakeServer


@pytest.fixture
def server(tmp_path):
    srv = FakeServer(tmp_path / "server.sock", Welcome(PROTOCOL_VERSION, (7,)), listen=False)
    yield srv
    srv.close()


def make_link(server, on_message=None):
    welcomes: queue.Queue = queue.Queue()
    messages: queue.Queue = queue.Queue()
    link = ServerLink(Address("unix", str(server.path)), "ctl", welcomes.put, on_message or messages.put,
                      min_delay=0.05, max_delay=0.2, keys=server.keys)
    return link, welcomes, messages


def test_connects_once_the_server_appears_and_delivers_messages(server, caplog):
    caplog.set_level(logging.INFO, "routeflow.controller")
    link, welcomes, messages = make_link(server)
    assert not link.send(DatapathLeave(1)), "nothing to send on before connecting"
    link.start()
    try:
        wait_for(lambda: caplog.text.count("cannot reach the server") >= 2, 5, 0.01)  # a few failed attempts first
        server.listen()
        assert welcomes.get(timeout=5) == Welcome(PROTOCOL_VERSION, (7,))
        hello = server.wait_for(lambda m: isinstance(m, Hello), timeout=5)
        assert (hello.role, hello.name) == ("controller", "ctl")
        server.send(StatsRequest(3))
        assert messages.get(timeout=5) == StatsRequest(3)
        assert link.send(DatapathLeave(1))
        assert server.wait_for(lambda m: isinstance(m, DatapathLeave), timeout=5) == DatapathLeave(1)
    finally:
        link.stop()
    assert server.wait_for(lambda m: isinstance(m, Goodbye), timeout=5).reason == "controller stopping"


def test_reconnects_after_the_server_drops_it(server):
    server.listen()
    link, welcomes, _ = make_link(server)
    link.start()
    try:
        welcomes.get(timeout=5)
        server.drop_peer()
        welcomes.get(timeout=5)
        assert len(server.hellos) == 2
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
        assert "unexpected StatsRequest" in server.wait_for(lambda m: isinstance(m, Goodbye), timeout=5).reason
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
    assert server.wait_for(lambda m: isinstance(m, Goodbye), timeout=5).reason == "controller stopping"


def test_tries_each_address_of_a_server_pair(tmp_path):
    """Of a server pair only the active one listens: the link finds it, whichever it is."""
    server = FakeServer(tmp_path / "b.sock", Welcome(PROTOCOL_VERSION, (7,)), listen=False)
    welcomes: queue.Queue = queue.Queue()
    link = ServerLink((Address("unix", str(tmp_path / "a.sock")), Address("unix", str(server.path))), "ctl",
                      welcomes.put, queue.Queue().put, min_delay=0.05, max_delay=0.2, keys=server.keys)
    link.start()
    try:
        server.listen()
        assert welcomes.get(timeout=5) == Welcome(PROTOCOL_VERSION, (7,))
        assert link.connected
    finally:
        link.stop()
        server.close()
