"""Sans-IO RF-protocol codec: bytes in, messages out; messages in, bytes out.

A frame is a 4-byte big-endian length followed by a msgpack-encoded message.
The codec holds no socket, so the asyncio server, the threaded os-ken
controller and the tests all share it unchanged. Its receive buffer is bounded
by :data:`MAX_FRAME`; anything malformed raises :class:`RemoteProtocolError`,
after which the peer must be closed.
"""

from __future__ import annotations

import struct

import msgspec

from routeflow.protocol import auth
from routeflow.protocol.messages import (
    ACCEPTED,
    PROTOCOL_VERSION,
    AnyMessage,
    Challenge,
    Goodbye,
    Hello,
    Message,
    Proof,
    Role,
    Welcome,
)

#: Largest frame accepted from a peer that has said hello. The largest legitimate
#: message is a TableMod of 50,000 flows (about 7 MB); FIBs and table dumps travel
#: in parts of 10,000 routes or flows (under 2 MB each).
MAX_FRAME = 32 * 1024 * 1024
#: Largest frame accepted before the hello: a hello is a few dozen bytes.
HELLO_MAX_FRAME = 64 * 1024
#: Largest frame written, and accepted by an operator from the server: a status
#: with every flow of a million-route table is one reply of a few hundred MB.
MAX_REPLY = 1024 * 1024 * 1024
_HEADER = struct.Struct("!I")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyMessage)


class ProtocolError(Exception):
    """Base of protocol errors."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; close it with this reason."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow."""


def encode(msg: Message) -> bytes:
    """One framed message."""
    body = _encoder.encode(msg)
    if len(body) > MAX_REPLY:
        raise LocalProtocolError(f"{type(msg).__name__} too large: {len(body)} bytes")
    return _HEADER.pack(len(body)) + body


class Connection:
    """Framing and decoding state of one connection (either side)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        #: The largest frame accepted; raise it once the peer has said who it is.
        self.max_frame = max_frame

    def receive_data(self, data: bytes) -> list[AnyMessage]:
        """Feed received bytes; return every complete message they finish."""
        self._buffer += data
        messages: list[AnyMessage] = []
        offset = 0
        buf = self._buffer
        while len(buf) - offset >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buf, offset)
            if length > self.max_frame:
                raise RemoteProtocolError(f"frame of {length} bytes exceeds {self.max_frame}")
            end = offset + _HEADER.size + length
            if len(buf) < end:
                break
            body = bytes(buf[offset + _HEADER.size : end])
            offset = end
            try:
                messages.append(_decoder.decode(body))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise RemoteProtocolError(f"undecodable message: {exc}") from exc
        del buf[:offset]
        return messages

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)


def check_hello(msg: AnyMessage) -> Hello:
    """Validate the opening message of a peer."""
    if not isinstance(msg, Hello):
        raise RemoteProtocolError(f"expected hello, got {type(msg).__name__}")
    if msg.version != PROTOCOL_VERSION:
        raise RemoteProtocolError(
            f"protocol version {msg.version} not supported (this server speaks {PROTOCOL_VERSION})"
        )
    if not msg.name:
        raise RemoteProtocolError("hello without a name")
    return msg


def check_accepted(role: Role, msg: AnyMessage) -> None:
    """Raise unless a peer in ``role`` may send ``msg`` after the handshake."""
    if not isinstance(msg, ACCEPTED[role]):
        raise RemoteProtocolError(f"unexpected {type(msg).__name__} from a {role}")


def answer_challenge(msg: AnyMessage, key: bytes, hello: Hello) -> Proof:
    """Check the server's proof over our hello's nonce and prove ourselves (peer side)."""
    if isinstance(msg, Goodbye):
        raise RemoteProtocolError(f"server refused us: {msg.reason}")
    if not isinstance(msg, Challenge):
        raise RemoteProtocolError(f"expected challenge, got {type(msg).__name__}")
    if not auth.check(key, msg.proof, "server", hello.role, hello.name, hello.nonce):
        raise RemoteProtocolError("the server could not prove it holds our key: it is not our RF-Server")
    return Proof(auth.proof(key, "peer", hello.role, hello.name, msg.nonce))


def check_welcome(msg: AnyMessage) -> Welcome:
    """Validate the server's answer to our hello (peer side)."""
    if isinstance(msg, Goodbye):
        raise RemoteProtocolError(f"server refused us: {msg.reason}")
    if not isinstance(msg, Welcome):
        raise RemoteProtocolError(f"expected welcome, got {type(msg).__name__}")
    if msg.version != PROTOCOL_VERSION:
        raise RemoteProtocolError(f"server speaks protocol version {msg.version}")
    return msg
