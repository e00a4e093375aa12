"""A peer's way in to the RF-Server: the hello that says who it is, then its proof.

Over a plain transport (Unix socket, TCP) the server answers the hello with its
own proof and a challenge, and the peer must answer with a proof of the key of
the identity it claimed; over TLS the certificate it presented must be that
identity's. Pure: :class:`Handshake` is fed the peer's messages and says what
to send; the server (and the test suite's fake servers) do the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from routeflow.protocol import auth, codec, pki
from routeflow.protocol.messages import AnyMessage, Challenge, Hello, Message, Proof


class AuthenticationFailed(codec.RemoteProtocolError):
    """The peer did not prove it is who its hello says; ``reason`` says how, for the log."""

    def __init__(self, hello: Hello, reason: str, detail: str = "") -> None:
        super().__init__(f"authentication failed for {hello.role} {hello.name!r}{detail}")
        self.hello = hello
        self.reason = reason


@dataclass
class Handshake:
    """One connection's handshake. ``key_of`` gives the key of an identity
    (``client-rA``), ``unknown`` refuses a peer that cannot exist; ``peercert`` is the certificate the peer presented over TLS,
    or None on a plain transport (``tls`` False)."""

    key_of: Callable[[str], bytes]
    #: Why the peer a hello names cannot exist (an unknown VM), or None.
    unknown: Callable[[Hello], str | None] = lambda hello: None
    tls: bool = False
    peercert: dict | None = None
    #: The peer's hello, once received.
    hello: Hello | None = None
    _key: bytes = b""
    _challenge: str = ""

    def receive(self, msg: AnyMessage) -> tuple[Message | None, Hello | None]:
        """Take the peer's next message: what to answer (or None), and its hello once
        it has proven it (None until then). Raises :class:`codec.RemoteProtocolError`
        for a message out of place, :class:`AuthenticationFailed` for an impostor,
        who is refused before it is anyone, so it can displace no one."""
        if self.hello is None:
            hello = self.hello = codec.check_hello(msg)
            if (reason := self.unknown(hello)) is not None:
                raise codec.RemoteProtocolError(reason)
            claimed = auth.identity(hello.role, hello.name)
            if self.tls:
                certified = pki.certified_identity(self.peercert)
                if certified != claimed:
                    raise AuthenticationFailed(hello, f"its certificate is {certified!r}'s",
                                               f": the certificate is {certified!r}'s")
                return None, hello
            self._key, self._challenge = self.key_of(claimed), auth.nonce()
            proof = auth.proof(self._key, "server", hello.role, hello.name, hello.nonce)
            return Challenge(self._challenge, proof), None
        hello = self.hello
        if isinstance(msg, Proof) and auth.check(self._key, msg.proof, "peer", hello.role, hello.name,
                                                 self._challenge):
            return None, hello
        raise AuthenticationFailed(hello, "it did not prove it holds that key")
