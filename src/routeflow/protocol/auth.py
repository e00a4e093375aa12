"""Who a peer is: per-peer keys and the challenge each side answers with them.

Every RF-protocol peer holds a key of its own identity: ``controller``,
``operator``, or ``client-<VM>`` for the RF-Client of one VM. The server holds
them all (it makes any that are missing, 0600 in a 0700 directory, when it
starts), and a VM's client is started with its VM's key alone, so the key a
peer proves, not the name in its hello, decides what it may speak for.

The handshake, after the hello (which carries the peer's nonce): the server
sends a :class:`~routeflow.protocol.messages.Challenge` with its own nonce and
its proof over the peer's, the peer checks that proof (a stand-in server
cannot forge it) and answers with a :class:`~routeflow.protocol.messages.Proof`
over the server's nonce; only then is it welcomed. Each proof is an
HMAC-SHA256 over who proves, the role, the name and the other side's fresh
nonce, so none can be replayed.

Why keys and HMAC rather than TLS client certificates: every peer of a
routeflow host runs on that host, over a Unix socket only root can open; a
shared-key challenge proves identity there with no certificate authority to
run and nothing to expire, and costs a few microseconds per connection.
Encryption on the wire (TLS) is still needed for peers on other hosts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from pathlib import Path

from routeflow.private import private_dir, write_private

#: Where a host's keys live by default (``--keys DIR`` elsewhere).
KEY_DIR = Path("/run/routeflow/keys")
_KEY_BYTES = 32


class AuthError(Exception):
    """A key could not be read, or a proof did not hold."""


def identity(role: str, name: str) -> str:
    """The identity whose key a peer in ``role`` named ``name`` must hold."""
    return f"client-{name}" if role == "client" else role


def key_path(key_dir: Path, ident: str) -> Path:
    return key_dir / f"{ident}.key"


def load_key(key_dir: Path, ident: str) -> bytes:
    """The key of ``ident``; AuthError saying why if it cannot be read."""
    path = key_path(key_dir, ident)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except OSError as exc:
        raise AuthError(f"cannot read the key of {ident} ({path}): {exc.strerror}") from None
    except ValueError:
        raise AuthError(f"{path} holds no key (expected {_KEY_BYTES * 2} hex digits)") from None
    if len(key) != _KEY_BYTES:
        raise AuthError(f"{path} holds no key (expected {_KEY_BYTES * 2} hex digits)")
    return key


def ensure_keys(key_dir: Path, idents: Iterable[str]) -> dict[str, bytes]:
    """The keys of ``idents``, made (at random, private) for any that has none yet."""
    private_dir(key_dir)
    keys = {}
    for ident in idents:
        if not key_path(key_dir, ident).exists():
            write_private(key_path(key_dir, ident), secrets.token_hex(_KEY_BYTES) + "\n")
        keys[ident] = load_key(key_dir, ident)
    return keys


def nonce() -> str:
    """A fresh challenge."""
    return secrets.token_hex(16)


def proof(key: bytes, prover: str, role: str, name: str, challenge: str) -> str:
    """What ``prover`` (``"server"`` or ``"peer"``) answers to ``challenge`` in the
    session of ``role`` ``name``."""
    text = f"routeflow-auth-1|{prover}|{role}|{name}|{challenge}".encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def check(key: bytes, answer: str, prover: str, role: str, name: str, challenge: str) -> bool:
    """Whether ``answer`` is ``prover``'s proof over ``challenge`` (in constant time)."""
    return hmac.compare_digest(answer, proof(key, prover, role, name, challenge))
