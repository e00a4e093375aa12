"""Where RF-protocol peers meet: ``tcp:HOST:PORT`` or ``unix:PATH`` addresses,
and the client side of a session for blocking and asyncio callers.

Unix sockets let an RF-Client inside a network namespace reach the server
without any address in that namespace; TCP serves real VMs and remote hosts.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from pathlib import Path
from typing import NamedTuple

from routeflow.protocol import auth, codec
from routeflow.protocol.messages import PROTOCOL_VERSION, AnyMessage, Hello, Message, Ping, Pong, Role, Welcome

DEFAULT_UNIX = "/run/routeflow/server.sock"
DEFAULT_TCP = "tcp:127.0.0.1:6650"
DEFAULT_SERVER = "unix:" + DEFAULT_UNIX


class Address(NamedTuple):
    kind: str  # "tcp" or "unix"
    host: str  # host for tcp, path for unix
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.host}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``tcp:HOST:PORT`` or ``unix:PATH``; raise ValueError with the reason."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return Address("unix", rest)
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return Address("tcp", host.strip("[]"), int(port))
    raise ValueError(f"bad address {text!r}: expected tcp:HOST:PORT or unix:PATH")


def connect_blocking(address: Address, timeout: float = 5.0) -> socket.socket:
    if address.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address.host)
    else:
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class BlockingSession:
    """A blocking RF-protocol session (controller threads and the CLI)."""

    def __init__(self, address: Address, role: Role, name: str, timeout: float = 5.0,
                 keys: Path = auth.KEY_DIR) -> None:
        key = auth.load_key(keys, auth.identity(role, name))  # before connecting: no key, no try
        self.sock = connect_blocking(address, timeout)
        # Whole frames only: a Pong from the receiving thread must not cut into another's send.
        self._write = threading.Lock()
        # An operator's replies (a whole status) may be far larger than what peers send the server.
        self.conn = codec.Connection(codec.MAX_REPLY if role == "operator" else codec.MAX_FRAME)
        self._pending: deque[AnyMessage] = deque()
        hello = Hello(PROTOCOL_VERSION, role, name, auth.nonce())
        self.send(hello)
        self.send(codec.answer_challenge(self.receive(), key, hello))
        self.welcome: Welcome = codec.check_welcome(self.receive())

    def send(self, msg: Message) -> None:
        frame = codec.encode(msg)
        with self._write:
            self.sock.sendall(frame)

    def receive(self) -> AnyMessage:
        """Next message (a :class:`Ping` is answered here and never returned);
        raises ConnectionError when the server closes."""
        while True:
            while not self._pending:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                self._pending.extend(self.conn.receive_data(data))
            msg = self._pending.popleft()
            if not isinstance(msg, Ping):
                return msg
            self.send(Pong(msg.seq))

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()


class AsyncSession:
    """An asyncio RF-protocol session (the RF-Client)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, welcome: Welcome,
                 conn: codec.Connection, pending: deque[AnyMessage]) -> None:
        self.reader = reader
        self.writer = writer
        self.welcome = welcome
        self._conn = conn
        self._pending = pending

    @classmethod
    async def open(cls, address: Address, role: Role, name: str, key: bytes) -> AsyncSession:
        """Connect and prove ourselves with ``key``, the key of our identity."""
        if address.kind == "unix":
            reader, writer = await asyncio.open_unix_connection(address.host, limit=1 << 20)
        else:
            reader, writer = await asyncio.open_connection(address.host, address.port, limit=1 << 20)
        conn = codec.Connection()
        hello = Hello(PROTOCOL_VERSION, role, name, auth.nonce())
        writer.write(codec.encode(hello))
        pending: deque[AnyMessage] = deque()

        async def next_message() -> AnyMessage:
            while not pending:
                data = await reader.read(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection during the handshake")
                pending.extend(conn.receive_data(data))
            return pending.popleft()

        writer.write(codec.encode(codec.answer_challenge(await next_message(), key, hello)))
        welcome = codec.check_welcome(await next_message())
        return cls(reader, writer, welcome, conn, pending)

    async def send(self, *msgs: Message) -> None:
        """Send ``msgs`` in order, all written before the first wait: nothing
        another task sends meanwhile can come between them."""
        for msg in msgs:
            self.writer.write(codec.encode(msg))
        await self.writer.drain()

    async def receive(self) -> AnyMessage:
        """Next message (a :class:`Ping` is answered here and never returned)."""
        while True:
            while not self._pending:
                data = await self.reader.read(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection")
                self._pending.extend(self._conn.receive_data(data))
            msg = self._pending.popleft()
            if not isinstance(msg, Ping):
                return msg
            self.writer.write(codec.encode(Pong(msg.seq)))

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
