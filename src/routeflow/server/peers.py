"""The RF-Server's view of one connected peer: what it is sent (bounded), when it
was last heard from, its requests in progress, and a FIB arriving in parts."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Mapping

from routeflow.model import Fib, Interface, Neighbour, Route
from routeflow.protocol import codec
from routeflow.protocol.messages import Goodbye, Message
from routeflow.server.nib import shared_route

log = logging.getLogger("routeflow.server")

#: Requests of one operator worked on at once: it is read no further until one is
#: answered, so a peer that floods requests waits instead of filling the server.
MAX_REQUESTS = 4


class Peer:
    """One connected controller, client or operator."""

    def __init__(self, role: str, name: str, writer: asyncio.StreamWriter, max_unread: int) -> None:
        self.role = role
        self.name = name
        self.writer = writer
        self.max_unread = max_unread
        #: A client's unsolicited snapshot, as its parts arrive.
        self.snapshot: FibParts | None = None
        #: When it was last heard from (``time.monotonic()``).
        self.heard = time.monotonic()
        #: Its requests being worked on, and the signal that one is done.
        self.requests = 0
        self.request_done = asyncio.Event()

    def send(self, msg: Message) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(codec.encode(msg))
        if self.writer.transport.get_write_buffer_size() > self.max_unread:
            # A peer that does not read would make the server hold all it is sent.
            log.warning("dropping %s %s: it left more than %d bytes unread", self.role, self.name, self.max_unread)
            self.writer.transport.abort()

    def close(self, reason: str) -> None:
        self.send(Goodbye(reason))
        self.writer.close()


class FibParts:
    """A FIB received in parts, compactly: a route equal to the server's copy
    is that copy, any other shares its next hops and protocol name with the
    rest. Decoded, each of a million routes would hold about 400 bytes."""

    def __init__(self, known: Mapping[str, Route]) -> None:
        self._known = known
        self._interfaces: list[Interface] = []
        self._routes: list[Route] = []
        self._neighbours: list[Neighbour] = []

    def add(self, part: Fib) -> None:
        self._interfaces += part.interfaces
        known = self._known
        for route in part.routes:
            have = known.get(route.prefix)
            self._routes.append(have if have == route else shared_route(route))
        self._neighbours += part.neighbours

    def fib(self) -> Fib:
        return Fib(tuple(self._interfaces), tuple(self._routes), tuple(self._neighbours))
