"""The asyncio Netlink watcher: the kernel's tables as a stream of FIB updates.

The watcher owns the client's rtnetlink sockets, and reads nothing but raw
datagrams from them: the dumps (:func:`read_dump`, in a thread) and the
multicast events alike go to :class:`~routeflow.client.fib.FibState` as bytes,
decoded by :mod:`routeflow.client.netlink`.

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

What the kernel changes without an event (see :mod:`routeflow.client.fib`)
is read again when the state says it may have happened; and, in case the
kernel does it some other way, every ``audit_interval`` the watcher reads the
next-hop objects and routes again while no event is pending, repairs any
difference as a delta, counts it, and reports each audit as a
:class:`~routeflow.protocol.messages.FibAudit`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections import deque
from collections.abc import AsyncGenerator

from routeflow.client import netlink
from routeflow.client.fib import FibState
from routeflow.client.netlink import (
    FAMILIES,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
)
from routeflow.model import Fib
from routeflow.protocol.messages import FibAudit, FibDelta, FibSnapshot

log = logging.getLogger("routeflow.client")

#: Links, neighbours (both families), and addresses and routes of each handled family
#: (next-hop objects are joined apart: :data:`~routeflow.client.netlink.RTNLGRP_NEXTHOP`).
GROUPS = (
    RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
)
#: Receive buffer of the event socket; room for about 100k route events.
RCVBUF = 32 * 1024 * 1024
_SO_RCVBUFFORCE = 33  # not exported by the socket module; lets root exceed rmem_max
_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP = 270, 1
_DATAGRAM_MAX = 65536
#: Datagrams read per wake-up, so that a flood cannot starve the event loop.
_DRAIN_MAX = 10000
#: An audit takes at most this share of the watcher's time: with a million
#: routes a dump takes seconds, and the interval stretches to match.
_AUDIT_SHARE = 0.05

#: Bytes a dump's socket takes in at once.
_DUMP_RECV = 1 << 20

#: The watcher's output: a full state (at start and after an overflow), changes, audit reports.
Update = FibSnapshot | FibDelta | FibAudit


def read_dump(request: int, family: int = socket.AF_UNSPEC) -> list[bytes]:
    """The datagrams of one rtnetlink dump (``request``: an RTM_GET* type), blocking:
    run it in a thread. Raw bytes, so that dumps go through the same decoder as events."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * _DUMP_RECV)
        sock.bind((0, 0))
        sock.send(netlink.dump_request(request, family))
        datagrams = []
        while True:
            data = sock.recv(_DUMP_RECV)
            datagrams.append(data)
            for kind, _, start, end in netlink.messages(data):
                if kind in (netlink.NLMSG_ERROR, netlink.NLMSG_DONE):
                    # Both carry an error code: a dump can fail at its end, too.
                    error = netlink.error_code(data, start, end)
                    if error:
                        raise OSError(-error, f"netlink dump {request} failed: {os.strerror(-error)}")
                    if kind == netlink.NLMSG_DONE:
                        return datagrams


async def dump_routes() -> list[bytes]:
    """A fresh dump of the next-hop objects (first: routes name them) and of
    the routes of every handled family, as raw datagrams."""
    datagrams = await dump_nexthops()
    for family in sorted(FAMILIES):
        datagrams += await asyncio.to_thread(read_dump, netlink.RTM_GETROUTE, family)
    return datagrams


async def dump_nexthops() -> list[bytes]:
    """A dump of the next-hop objects; none on a kernel without them (before 5.3)."""
    try:
        return await asyncio.to_thread(read_dump, netlink.RTM_GETNEXTHOP)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return []
        raise


async def dump() -> list[bytes]:
    """A fresh dump of links (first, to name the rest), next-hop objects,
    addresses, routes and neighbours."""
    datagrams = await asyncio.to_thread(read_dump, netlink.RTM_GETLINK)
    datagrams += await dump_nexthops()
    for family in sorted(FAMILIES):
        for request in (netlink.RTM_GETADDR, netlink.RTM_GETROUTE, netlink.RTM_GETNEIGH):
            datagrams += await asyncio.to_thread(read_dump, request, family)
    return datagrams


async def fresh_fib() -> Fib:
    """The FIB read from the kernel right now, independent of any watcher."""
    return FibState.load(await dump()).fib()


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
        try:
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, netlink.RTNLGRP_NEXTHOP)
        except OSError:  # a kernel without next-hop objects (before 5.3)
            log.info("no next-hop object events on this kernel")
        self._loop.add_reader(self._sock.fileno(), self._drain)

    def drain(self) -> None:
        """Take in whatever the kernel has queued for us by now."""
        self._drain()

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
    """Streams the kernel FIB as :class:`FibSnapshot` / :class:`FibDelta` updates,
    with a :class:`FibAudit` after each audit.

    ``window`` is how long to gather events after the first of a batch and
    ``max_batch`` caps how many go into one delta; ``audit_interval`` is the
    least time between two audits (None: never audit).
    """

    def __init__(self, window: float = 0.01, max_batch: int = 2000, rcvbuf: int = RCVBUF,
                 audit_interval: float | None = 30.0) -> None:
        self.window = window
        self.max_batch = max_batch
        self.rcvbuf = rcvbuf
        self.audit_interval = audit_interval
        self._state = FibState()
        #: Audits done and routes they found wrong (and repaired), since start.
        self.audits = 0
        self.repaired = 0
        self._last_repair = ""
        self._next_audit = 0.0

    def fib(self) -> Fib:
        """The state as of the last update handed out (what a fresh peer must get)."""
        return self._state.fib()

    def nics(self) -> dict[str, str]:
        """MAC address by name of every Ethernet interface but the loopback."""
        return self._state.nics()

    async def updates(self) -> AsyncGenerator[Update, None]:
        """A snapshot, then deltas and audits; a new snapshot after every overflow. Never ends."""
        while True:
            events = _EventSocket(self.rcvbuf)
            try:
                self._state = FibState.load(await dump())
                yield FibSnapshot(self._state.fib())
                self._schedule_audit(0.0)
                while True:
                    if self._audit_due(events):
                        delta, audit = await self._audit(events)
                        if delta is not None:
                            yield delta
                        yield audit
                        continue
                    delta = await self._next_delta(events)
                    if delta is not None:
                        yield delta
            except _Overflow:
                log.warning("netlink events lost (ENOBUFS): reading all tables again")
            finally:
                events.close()

    async def _next_delta(self, events: _EventSocket) -> FibDelta | None:
        await self._wait_readable(events)
        if not events.readable.is_set():
            return None  # time for an audit
        if len(events.datagrams) < self.max_batch:
            await asyncio.sleep(self.window)  # let the rest of a burst arrive
        if events.error is not None:
            if events.error.errno == errno.ENOBUFS:
                raise _Overflow from events.error
            raise events.error
        for _ in range(min(len(events.datagrams), self.max_batch)):
            self._state.apply_datagram(events.datagrams.popleft())
        if not events.datagrams:
            events.readable.clear()
        if self._state.routes_stale:
            self._state.resync(await dump_routes())
        return self._state.take_delta()

    async def _wait_readable(self, events: _EventSocket) -> None:
        if self.audit_interval is None:
            await events.readable.wait()
            return
        timeout = max(0.0, self._next_audit - time.monotonic())
        try:
            await asyncio.wait_for(events.readable.wait(), timeout)
        except TimeoutError:
            pass

    def _audit_due(self, events: _EventSocket) -> bool:
        # Only with nothing pending: the state then is all the kernel has told.
        return (self.audit_interval is not None and time.monotonic() >= self._next_audit
                and not events.datagrams and events.error is None)

    def _schedule_audit(self, took: float) -> None:
        if self.audit_interval is not None:
            self._next_audit = time.monotonic() + max(self.audit_interval, took / _AUDIT_SHARE)

    async def _audit(self, events: _EventSocket) -> tuple[FibDelta | None, FibAudit]:
        """Read the objects and routes again and repair what differs. A
        difference counts only if no event arrived meanwhile, since then the
        state held everything the kernel had announced."""
        started = time.monotonic()
        datagrams = await dump_routes()
        events.drain()
        quiet = not events.datagrams and events.error is None
        self._state.resync(datagrams)
        delta = self._state.take_delta()
        self.audits += 1
        if quiet and delta is not None and (delta.routes_set or delta.routes_del):
            wrong = sorted({r.prefix for r in delta.routes_set} | set(delta.routes_del))
            self.repaired += len(wrong)
            self._last_repair = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            log.warning("FIB audit: %d route(s) differed from the kernel without an event, repaired: %s",
                        len(wrong), ", ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else ""))
        took = time.monotonic() - started
        self._schedule_audit(took)
        return delta, FibAudit(audits=self.audits, repaired=self.repaired, last_repair=self._last_repair,
                               seconds=round(took, 4))
