"""The operator's client of the RF-Server: the requests ``status``, ``verify`` and ``reload``.

What ``routeflow status``, ``verify`` and ``reload`` ask a running server over the
RF-protocol, and what the demo, the running-stack harness and the benchmarks ask
it too. Like the controller's :class:`~routeflow.controller.link.ServerLink`, a
client of the server with its own identity (``operator``), but one request per
session and no thread: it returns the server's documents and replies, and
printing them is the CLI's job (:mod:`routeflow.cli.render`).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routeflow.protocol.auth import KEY_DIR, AuthError
from routeflow.protocol.messages import (
    ReloadReply,
    ReloadRequest,
    StatusReply,
    StatusRequest,
    VerifyReply,
    VerifyRequest,
)
from routeflow.protocol.transport import BlockingSession, first_answering, parse_addresses

#: Reply wait: verify dumps every datapath and every VM's FIB.
TIMEOUT = 900.0
#: Between two verify requests while waiting for a clean one.
VERIFY_RETRY = 1.0
Request = StatusRequest | VerifyRequest | ReloadRequest
Reply = StatusReply | VerifyReply | ReloadReply


class ServerUnreachable(ConnectionError):
    """The RF-Server could not be asked: nothing listens there, the connection broke, or
    the operator's key is missing or refused."""

    def __init__(self, server: str, reason: object) -> None:
        super().__init__(f"cannot reach the server at {server}: {reason}")
        self.server, self.reason = server, reason


class OperatorClient:
    """Asks the server at ``server`` (``unix:PATH``, ``tcp:HOST:PORT``, ...) as the operator,
    whose key is in ``keys``; each request is its own session, so the client holds no socket."""

    def __init__(self, server: str, keys: Path = KEY_DIR, timeout: float = TIMEOUT) -> None:
        self.server = server
        self.keys = keys
        self.timeout = timeout

    def status(self, detail: bool = True) -> dict[str, Any]:
        """The server's status document (with every route and flow if ``detail``)."""
        reply = self._ask(StatusRequest(1, detail))
        assert isinstance(reply, StatusReply)
        return reply.status

    def verify(self, wait: float = 0.0) -> VerifyReply:
        """The server's verify report; with ``wait``, asked again until it is clean or
        ``wait`` seconds have passed (a server not up yet, or not yet reachable, is waited
        for too), and the last report returned."""
        deadline = time.monotonic() + wait
        while True:
            try:
                reply = self._ask(VerifyRequest(1))
            except ServerUnreachable:
                if time.monotonic() >= deadline:  # waiting covers a server not up yet (nor its keys)
                    raise
            else:
                assert isinstance(reply, VerifyReply)
                if reply.ok or time.monotonic() >= deadline:
                    return reply
            time.sleep(VERIFY_RETRY)

    def reload(self) -> ReloadReply:
        """Have the server read its config file again and apply what differs; its reply
        says what changed and the FlowMods it took, or why the file was refused."""
        reply = self._ask(ReloadRequest(1))
        assert isinstance(reply, ReloadReply)
        return reply

    def _ask(self, request: Request) -> Reply:
        try:
            # A server pair's addresses are tried in turn: the active one is listening.
            session = first_answering(parse_addresses(self.server), lambda address: BlockingSession(
                address, "operator", "cli", timeout=self.timeout, keys=self.keys))
        except (OSError, AuthError) as exc:  # AuthError: no key here, so no server has run here
            raise ServerUnreachable(self.server, exc) from exc
        try:
            session.send(request)
            reply = session.receive()
        except OSError as exc:
            raise ServerUnreachable(self.server, exc) from exc
        finally:
            session.close()
        if not isinstance(reply, (StatusReply, VerifyReply, ReloadReply)):
            raise ServerUnreachable(self.server, f"unexpected reply {type(reply).__name__}")
        return reply


#: How long one long poll of ``events`` waits for news before asking again.
EVENTS_POLL = 30.0


def events(http: str, since: int = 0, follow: bool = False) -> Iterator[dict[str, Any]]:
    """The server's events after number ``since``, from its HTTP surface at ``http``
    (``HOST:PORT``); with ``follow``, on and on as they happen (long polls). A gap the
    server's log no longer holds comes as ``{"kind": "missed", "missed": N}``."""
    while True:
        url = f"http://{http}/api/v1/events?since={since}&wait={EVENTS_POLL if follow else 0:g}"
        try:
            with urllib.request.urlopen(url, timeout=EVENTS_POLL + 10) as response:
                page = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServerUnreachable(f"http://{http}", getattr(exc, "reason", exc)) from exc
        if page["last"] < since:  # a new server: its numbers start again
            since = 0
            continue
        if page["missed"]:
            yield {"kind": "missed", "missed": page["missed"]}
        for event in page["events"]:
            since = event["seq"]
            yield event
        if not follow and not page["events"]:
            return


def status_problems(doc: dict[str, Any]) -> list[str]:
    """What makes ``routeflow status`` exit 1: the controller not connected, or a datapath
    the config mirrors (a VM's switch, the RFVS) not connected to it."""
    problems = [] if doc["controller_connected"] else ["controller not connected"]
    problems += [f"datapath {dp['dpid']} ({dp['mirrored_by']}) down"
                 for dp in doc["datapaths"] if dp["mirrored_by"] and not dp["connected"]]
    return problems
