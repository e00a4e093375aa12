"""The asyncio Netlink watcher: the kernel's tables as a stream of FIB updates.

Order matters so that nothing falls between the dump and the stream: the
event socket joins the multicast groups first, then a second socket dumps
(events of the meantime queue up on the first), then the events are applied
on top of the dump -- every event carries an object's whole state, so
replaying one the dump already shows changes nothing.

A burst (``ip -batch`` of 100k routes, a BGP session coming up) is coalesced:
after an event the watcher waits a few milliseconds, takes what arrived (up
to a cap) and emits one delta. When the kernel drops events (ENOBUFS: the
receive buffer overflowed) the watcher starts over with a fresh dump and
emits a full snapshot, never carrying on with a silently wrong table.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import deque
from collections.abc import AsyncGenerator

from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
)
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from routeflow.client import rtnetlink
from routeflow.client.fib import FAMILIES, FibState
from routeflow.model import Fib
from routeflow.protocol.messages import FibDelta, FibSnapshot

log = logging.getLogger("routeflow.client")

#: Links, neighbours (both families), and addresses and routes of each handled family.
GROUPS = (
    RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
)
#: Receive buffer of the event socket; room for about 100k route events.
RCVBUF = 32 * 1024 * 1024
_SO_RCVBUFFORCE = 33  # not exported by the socket module; lets root exceed rmem_max
_DATAGRAM_MAX = 65536
#: Datagrams read per wake-up, so that a flood cannot starve the event loop.
_DRAIN_MAX = 10000

#: The watcher's output: a full state (at start and after an overflow) or changes.
Update = FibSnapshot | FibDelta


async def dump_routes() -> list[bytes]:
    """A fresh dump of the routes of every handled family, as raw datagrams."""
    return [d for family in sorted(FAMILIES) for d in await asyncio.to_thread(rtnetlink.dump, rtnetlink.RTM_GETROUTE, family)]


async def dump() -> list[bytes]:
    """A fresh dump of links (first, to name the rest), addresses, routes and neighbours."""
    datagrams = await asyncio.to_thread(rtnetlink.dump, rtnetlink.RTM_GETLINK)
    for family in sorted(FAMILIES):
        for request in (rtnetlink.RTM_GETADDR, rtnetlink.RTM_GETROUTE, rtnetlink.RTM_GETNEIGH):
            datagrams += await asyncio.to_thread(rtnetlink.dump, request, family)
    return datagrams


def load(datagrams: list[bytes]) -> FibState:
    """A state loaded from dump datagrams, with everything reported.

    Empties ``datagrams`` as it goes: a million routes are some 60 MB of them.
    """
    state = FibState()
    marshal = MarshalRtnl()
    datagrams.reverse()
    while datagrams:
        rtnetlink.apply_datagram(state, datagrams.pop(), marshal)
    state.take_delta()
    return state


async def fresh_fib() -> Fib:
    """The FIB read from the kernel right now, independent of any watcher."""
    return load(await dump()).fib()


class _Overflow(Exception):
    """The kernel dropped events for us: the tables must be read again."""


class _EventSocket:
    """The multicast socket, drained into memory as soon as datagrams arrive.

    pyroute2's AsyncIPRoute reads one datagram per event-loop turn and parses
    it at once, so under a burst the backlog sits in the kernel buffer and
    overflows it; reading raw bytes eagerly and parsing them in batches keeps
    the kernel buffer nearly empty."""

    def __init__(self, rcvbuf: int) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setblocking(False)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:
            log.info("not allowed to raise the netlink buffer past rmem_max; bursts may overflow it")
        self.datagrams: deque[bytes] = deque()
        self.error: OSError | None = None
        self.readable = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._sock.bind((0, GROUPS))  # from here on, every event is queued for us
        self._loop.add_reader(self._sock.fileno(), self._drain)

    def _drain(self) -> None:
        for _ in range(_DRAIN_MAX):
            try:
                self.datagrams.append(self._sock.recv(_DATAGRAM_MAX))
            except BlockingIOError:
                break
            except OSError as exc:
                self.error = exc
                self._loop.remove_reader(self._sock.fileno())
                break
        self.readable.set()

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


class Watcher:
    """Streams the kernel FIB as :class:`FibSnapshot` / :class:`FibDelta` updates.

    ``window`` is how long to gather events after the first of a batch and
    ``max_batch`` caps how many go into one delta.
    """

    def __init__(self, window: float = 0.01, max_batch: int = 2000, rcvbuf: int = RCVBUF) -> None:
        self.window = window
        self.max_batch = max_batch
        self.rcvbuf = rcvbuf
        self._state = FibState()
        self._marshal = MarshalRtnl()

    def fib(self) -> Fib:
        """The state as of the last update handed out (what a fresh peer must get)."""
        return self._state.fib()

    def nics(self) -> dict[str, str]:
        """MAC address by name of every Ethernet interface but the loopback."""
        return self._state.nics()

    async def updates(self) -> AsyncGenerator[Update, None]:
        """A snapshot, then deltas; a new snapshot after every overflow. Never ends."""
        while True:
            events = _EventSocket(self.rcvbuf)
            try:
                self._state = load(await dump())
                yield FibSnapshot(self._state.fib())
                while True:
                    delta = await self._next_delta(events)
                    if delta is not None:
                        yield delta
            except _Overflow:
                log.warning("netlink events lost (ENOBUFS): reading all tables again")
            finally:
                events.close()

    async def _next_delta(self, events: _EventSocket) -> FibDelta | None:
        await events.readable.wait()
        if len(events.datagrams) < self.max_batch:
            await asyncio.sleep(self.window)  # let the rest of a burst arrive
        if events.error is not None:
            if events.error.errno == errno.ENOBUFS:
                raise _Overflow from events.error
            raise events.error
        for _ in range(min(len(events.datagrams), self.max_batch)):
            rtnetlink.apply_datagram(self._state, events.datagrams.popleft(), self._marshal)
        if not events.datagrams:
            events.readable.clear()
        if self._state.routes_stale:
            self._state.replace_kernel_routes(rtnetlink.routes(await dump_routes(), self._marshal))
        return self._state.take_delta()
