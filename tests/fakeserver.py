"""A stand-in RF-Server for tests of the real client and controller processes.

It listens on a Unix socket, welcomes every peer that proves it holds the key
of who it says it is (keys in :attr:`FakeServer.keys`, made there on demand:
give the peer under test that directory), records every message in order
(hellos included) and sends to the latest peer, so a test drives the process
under test with real RF-protocol bytes and waits for its answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from routeflow.protocol import auth, codec
from routeflow.protocol.messages import PROTOCOL_VERSION, Goodbye, Hello, Message, Proof, Welcome
from routeflow.server.handshake import AuthenticationFailed, Handshake


class FakeServer:
    def __init__(self, path: Path, welcome: Welcome = Welcome(PROTOCOL_VERSION), listen: bool = True,
                 identities: Sequence[str] = ("controller",), keys: Path | None = None) -> None:
        self.path = path
        self.address = f"unix:{path}"
        #: The keys of ``identities`` (``controller``, ``client-rA``): pass this directory
        #: to the peer under test (``--keys``), or make it the one the peer reads by default.
        self.keys = keys or path.parent / "keys"
        auth.ensure_keys(self.keys, identities)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        #: Guards everything below; notified on every message.
        self.lock = threading.Condition()
        self.received: list[Message] = []
        self.peer: socket.socket | None = None
        self._welcome = welcome
        if listen:
            self.listen()

    def listen(self) -> None:
        """Start taking peers (at once unless made with ``listen=False``)."""
        self.listener.bind(str(self.path))
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def on_message(self, msg: Message) -> None:
        """Called for every message, holding :attr:`lock` (for subclasses)."""

    @property
    def hellos(self) -> list[Hello]:
        with self.lock:
            return [m for m in self.received if isinstance(m, Hello)]

    def send(self, msg: Message, timeout: float = 15.0) -> None:
        """Send to the latest peer, waiting for one to connect."""
        with self.lock:
            if not self.lock.wait_for(lambda: self.peer is not None, timeout):
                raise AssertionError("no peer connected")
            peer = self.peer
        assert peer is not None
        peer.sendall(codec.encode(msg))

    def mark(self) -> int:
        """Position in the received history: wait only for what comes after it."""
        with self.lock:
            return len(self.received)

    def wait_for(self, pred: Callable[[Any], bool], since: int = 0, timeout: float = 15.0) -> Any:
        """The first message from ``since`` on that satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for msg in self.received[since:]:
                    if pred(msg):
                        return msg
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; received {self.received[since:]}"
                self.lock.wait(left)

    def count(self, kind: type[Message]) -> int:
        with self.lock:
            return sum(isinstance(msg, kind) for msg in self.received)

    def drop_peer(self) -> None:
        """End the latest peer's connection without a word, as a crashed server would."""
        with self.lock:
            peer = self.peer
        assert peer is not None
        peer.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        if self.peer is not None:
            self.peer.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        decoder = codec.Connection()
        handshake = Handshake(lambda identity: auth.ensure_keys(self.keys, [identity])[identity])
        with conn:
            while True:
                try:
                    data = conn.recv(1 << 20)
                except OSError:
                    return
                if not data:
                    return
                for msg in decoder.receive_data(data):
                    with self.lock:
                        # Recorded before the welcome, so a peer that has its welcome finds its hello here.
                        self.received.append(msg)
                        if isinstance(msg, (Hello, Proof)):
                            try:
                                answer, proven = handshake.receive(msg)
                            except AuthenticationFailed as exc:
                                conn.sendall(codec.encode(Goodbye(str(exc))))
                                return
                            if answer is not None:
                                conn.sendall(codec.encode(answer))
                            if proven is not None:
                                self.peer = conn
                                conn.sendall(codec.encode(self._welcome))
                        self.on_message(msg)
                        self.lock.notify_all()
