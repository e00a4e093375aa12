"""Where RF-protocol peers meet: ``unix:PATH``, ``tcp:HOST:PORT`` (loopback) or
``tls:HOST:PORT`` addresses, and the client side of a session for blocking and
asyncio callers.

Unix sockets let an RF-Client inside a network namespace reach the server
without any address in that namespace; TLS serves real VMs and remote hosts.
On ``unix:`` and ``tcp:`` a peer proves itself with its key
(:mod:`~routeflow.protocol.auth`), on ``tls:`` with its certificate
(:mod:`~routeflow.protocol.pki`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence, TypeVar

from routeflow.protocol import auth, codec, pki
from routeflow.protocol.messages import PROTOCOL_VERSION, AnyMessage, Hello, Message, Ping, Pong, Role, Welcome

DEFAULT_UNIX = "/run/routeflow/server.sock"
DEFAULT_TCP = "tcp:127.0.0.1:6650"
DEFAULT_SERVER = "unix:" + DEFAULT_UNIX


ADDRESS_FORMS = "unix:PATH, tcp:HOST:PORT or tls:HOST:PORT"
T = TypeVar("T")
#: Bytes asked of the socket per read: below malloc's mmap threshold, since recv
#: allocates all of it each call (1 MiB made a small reply's round trip 4x slower).
_RECV_SIZE = 64 << 10


class Address(NamedTuple):
    kind: str  # "unix", "tcp" or "tls"
    host: str  # host for tcp and tls, path for unix
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.host}" if self.kind == "unix" else f"{self.kind}:{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``unix:PATH``, ``tcp:HOST:PORT`` or ``tls:HOST:PORT``; raise ValueError with the reason."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return Address("unix", rest)
    if kind in ("tcp", "tls"):
        host, _, port = rest.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return Address(kind, host.strip("[]"), int(port))
    raise ValueError(f"bad address {text!r}: expected {ADDRESS_FORMS}")


def parse_addresses(text: str) -> tuple[Address, ...]:
    """A server's address, or the addresses of a server pair (an active one and its
    standby, :mod:`routeflow.server.election`) separated by commas, which peers try
    in turn: only the active server listens. All of one kind of proof: TLS for all,
    or a key for all (one credential serves them all). Raises ValueError with the reason."""
    addresses = tuple(parse_address(part.strip()) for part in text.split(","))
    if len({a.kind == "tls" for a in addresses}) > 1:
        raise ValueError(f"bad addresses {text!r}: tls: and unix:/tcp: addresses cannot be mixed")
    return addresses


def first_answering(addresses: Sequence[Address], connect: Callable[[Address], T]) -> T:
    """``connect(address)`` for each of ``addresses`` in turn, the first that succeeds
    (the active server of a pair); the last failure if none does."""
    failure: OSError | None = None
    for address in addresses:
        try:
            return connect(address)
        except OSError as exc:
            failure = exc
    assert failure is not None, "no address"
    raise failure


@dataclass(frozen=True)
class Credential:
    """How a peer proves who it is: its key (``unix:``, ``tcp:``) or its TLS context (``tls:``)."""

    key: bytes | None = None
    tls: ssl.SSLContext | None = None


def load_credential(address: Address, keys: Path, role: str, name: str) -> Credential:
    """The credential of ``role`` ``name`` for ``address``, read from ``keys``; raises
    auth.AuthError or pki.PkiError saying what is missing."""
    ident = auth.identity(role, name)
    if address.kind == "tls":
        return Credential(tls=pki.peer_context(keys, ident))
    return Credential(key=auth.load_key(keys, ident))


def connect_blocking(address: Address, timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> socket.socket:
    if address.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address.host)
        return sock
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is None:
        return sock
    try:
        wrapped = tls.wrap_socket(sock)
        pki.check_server(wrapped.getpeercert())
    except (ssl.SSLError, pki.PkiError) as exc:
        sock.close()
        raise ConnectionError(f"TLS with {address}: {exc}") from None
    return wrapped


class BlockingSession:
    """A blocking RF-protocol session (controller threads and the CLI)."""

    def __init__(self, address: Address, role: Role, name: str, timeout: float = 5.0,
                 keys: Path = auth.KEY_DIR) -> None:
        credential = load_credential(address, keys, role, name)  # before connecting: no key, no try
        self.address = address
        self.sock = connect_blocking(address, timeout, credential.tls)
        # Whole frames only: a Pong from the receiving thread must not cut into another's send.
        self._write = threading.Lock()
        # An operator's replies (a whole status) may be far larger than what peers send the server.
        self.conn = codec.Connection(codec.MAX_REPLY if role == "operator" else codec.MAX_FRAME)
        self._pending: deque[AnyMessage] = deque()
        hello = Hello(PROTOCOL_VERSION, role, name, auth.nonce())
        self.send(hello)
        if credential.key is not None:  # over TLS the certificates have proven both sides
            self.send(codec.answer_challenge(self.receive(), credential.key, hello))
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
                data = self.sock.recv(_RECV_SIZE)
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
    async def open(cls, address: Address, role: Role, name: str, credential: Credential) -> AsyncSession:
        """Connect and prove ourselves with ``credential``, our identity's (:func:`load_credential`)."""
        if address.kind == "unix":
            reader, writer = await asyncio.open_unix_connection(address.host, limit=1 << 20)
        else:
            reader, writer = await asyncio.open_connection(address.host, address.port, limit=1 << 20,
                                                           ssl=credential.tls,
                                                           server_hostname="" if credential.tls else None)
            if credential.tls is not None:
                try:
                    pki.check_server(writer.get_extra_info("peercert"))
                except pki.PkiError as exc:
                    writer.close()
                    raise ConnectionError(f"TLS with {address}: {exc}") from None
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

        if credential.key is not None:  # over TLS the certificates have proven both sides
            writer.write(codec.encode(codec.answer_challenge(await next_message(), credential.key, hello)))
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
