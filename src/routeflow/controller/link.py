"""The RF-Controller's session with the RF-Server, kept up from its own thread.

The link connects, says hello as a ``controller``, hands every message from the
server to a callback and, whatever ends the session (server gone, protocol
error, bug in a handler), reconnects with exponential back-off. Other threads
send through it at any time; while it is down, their messages are dropped,
since everything that matters is re-reported on reconnect.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from routeflow.protocol import auth, codec
from routeflow.protocol.messages import AnyMessage, Goodbye, Message, Welcome
from routeflow.protocol.transport import Address, BlockingSession, first_answering

LOG = logging.getLogger("routeflow.controller")

MIN_DELAY = 0.5
#: At most this long between attempts: a restarted server (its VMs adopted) is back in
#: about a second and verify should be clean within 2 s of it; a retry per second costs nothing.
MAX_DELAY = 1.0


class ServerLink:
    """A self-healing RF-protocol session to the server.

    ``on_connect(welcome)`` runs on the link thread after every handshake,
    before any message from the server; ``on_message(msg)`` runs on the link
    thread for every message after it. Either may raise to drop the session
    (``RemoteProtocolError`` for a peer that broke the protocol).
    """

    def __init__(
        self,
        address: Address | Sequence[Address],
        name: str,
        on_connect: Callable[[Welcome], None],
        on_message: Callable[[AnyMessage], None],
        min_delay: float = MIN_DELAY,
        max_delay: float = MAX_DELAY,
        keys: Path = auth.KEY_DIR,
    ) -> None:
        #: The server's addresses, tried in turn: a pair's active server is the one listening.
        self.addresses: tuple[Address, ...] = (address,) if isinstance(address, Address) else tuple(address)
        self.address = self.addresses[0]
        self.name = name
        #: Where the controller's key is; the server makes it when it first starts.
        self.keys = keys
        self._on_connect = on_connect
        self._on_message = on_message
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._stop = threading.Event()
        # Guards _session and serialises writes on its socket.
        self._send_lock = threading.Lock()
        self._session: BlockingSession | None = None
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        return self._session is not None

    def start(self) -> None:
        """Start the connect/receive thread (a daemon: it never blocks process exit)."""
        self._thread = threading.Thread(target=self._run, name="rf-server-link", daemon=True)
        self._thread.start()

    def stop(self, reason: str = "controller stopping", timeout: float = 2.0) -> None:
        """Say goodbye, close the session and wait for the thread to end."""
        self._stop.set()
        with self._send_lock:
            session = self._session
            if session is not None:
                try:
                    session.send(Goodbye(reason))
                except OSError:
                    pass
                self._shutdown(session)
        if self._thread is not None:
            self._thread.join(timeout)

    def send(self, msg: Message) -> bool:
        """Send ``msg`` if connected; return whether it went out. Thread-safe."""
        with self._send_lock:
            session = self._session
            if session is None:
                LOG.debug("server link down, dropping %s", type(msg).__name__)
                return False
            try:
                session.send(msg)
            except OSError as exc:
                LOG.warning("sending %s to the server failed: %s", type(msg).__name__, exc)
                # Wake the receive loop so it reconnects.
                self._shutdown(session)
                return False
        return True

    @staticmethod
    def _shutdown(session: BlockingSession) -> None:
        try:
            session.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _run(self) -> None:
        delay = self._min_delay
        while not self._stop.is_set():
            try:
                session = first_answering(
                    self.addresses, lambda address: BlockingSession(address, "controller", self.name, keys=self.keys))
            except (OSError, codec.ProtocolError, auth.AuthError) as exc:
                LOG.info("cannot reach the server at %s: %s (retry in %.1fs)",
                         ",".join(map(str, self.addresses)), exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._max_delay)
                continue
            delay = self._min_delay
            LOG.info("connected to the server at %s", session.address)
            self._serve(session)
            if not self._stop.is_set():
                self._stop.wait(delay)

    def _serve(self, session: BlockingSession) -> None:
        # Blocking reads: stop() and failed sends unblock them with shutdown().
        session.settimeout(None)
        with self._send_lock:
            if self._stop.is_set():
                session.close()
                return
            self._session = session
        try:
            self._on_connect(session.welcome)
            # Until the connection ends: stop() ends it, after its goodbye. Checking
            # _stop here would let this thread drop the session before that goodbye.
            while True:
                self._on_message(session.receive())
        except codec.ProtocolError as exc:
            LOG.error("protocol error from the server: %s", exc)
            self.send(Goodbye(f"protocol error: {exc}"))
        except (ConnectionError, OSError) as exc:
            if not self._stop.is_set():
                LOG.warning("server connection lost: %s", exc)
        except Exception:  # a handler bug must not end the link for good
            LOG.exception("error handling a message from the server; reconnecting")
        finally:
            with self._send_lock:
                self._session = None
            session.close()
