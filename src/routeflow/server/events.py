"""What the RF-Server has seen happen, as a bounded log of numbered events.

The server records each report of its peers that changes the picture (a switch or a port
up or down, a link found or lost, routes added or removed, a peer connected or gone) as
one :class:`Event`; the REST API serves them (``GET /api/v1/events?since=N``) and long-polls
for new ones, which ``routeflow events --follow`` streams. The log keeps the newest
:data:`EVENTS_KEPT`: a reader that falls further behind is told how many it missed.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Any

from routeflow.protocol.messages import (
    DatapathJoin,
    DatapathLeave,
    FibDelta,
    LinkChange,
    Message,
    PortChange,
    SwitchError,
)

#: Events kept for readers; older ones are dropped first.
EVENTS_KEPT = 10_000


@dataclass(frozen=True)
class Event:
    """One thing that happened: its number (from 1, in order), UTC time, kind and text,
    with the datapath or VM it concerns."""

    seq: int
    time: float
    kind: str
    text: str
    dpid: int | None = None
    vm: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.time))
                + f".{int(self.time % 1 * 1000):03d}Z", "kind": self.kind, "text": self.text,
                "dpid": None if self.dpid is None else f"{self.dpid:#x}", "vm": self.vm}


def describe(role: str, name: str, msg: Message) -> tuple[str, str, int | None, str | None] | None:
    """(kind, text, dpid, vm) of a peer's report worth an event, or None for the rest
    (table dumps, audits, statistics, replies)."""
    if isinstance(msg, DatapathJoin):
        return "datapath_up", f"datapath {msg.dpid:#x} connected with {len(msg.ports)} ports", msg.dpid, None
    if isinstance(msg, DatapathLeave):
        return "datapath_down", f"datapath {msg.dpid:#x} disconnected", msg.dpid, None
    if isinstance(msg, PortChange):
        state = "deleted" if msg.deleted else ("up" if msg.port.up else "down")
        return (f"port_{state}", f"datapath {msg.dpid:#x} port {msg.port.port_no} ({msg.port.name}) {state}",
                msg.dpid, None)
    if isinstance(msg, LinkChange):
        state = "up" if msg.up else "down"
        return (f"link_{state}", f"link {msg.src_dpid:#x}:{msg.src_port} - {msg.dst_dpid:#x}:{msg.dst_port} {state}",
                msg.src_dpid, None)
    if isinstance(msg, SwitchError):
        return "switch_error", f"datapath {msg.dpid:#x}: {msg.text}", msg.dpid, None
    if isinstance(msg, FibDelta) and (msg.routes_set or msg.routes_del):
        parts = [f"{len(msg.routes_set)} routes added or changed" if msg.routes_set else "",
                 f"{len(msg.routes_del)} withdrawn" if msg.routes_del else ""]
        first = msg.routes_set[0].prefix if msg.routes_set else msg.routes_del[0]
        return "routes", f"VM {name}: {', '.join(p for p in parts if p)} (first {first})", None, name
    return None


class EventLog:
    """The newest :data:`EVENTS_KEPT` events, and a wait for the next one."""

    def __init__(self, kept: int = EVENTS_KEPT) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=kept)
        self._seq = 0
        self._new = asyncio.Event()

    @property
    def last_seq(self) -> int:
        return self._seq

    def record(self, kind: str, text: str, dpid: int | None = None, vm: str | None = None) -> Event:
        self._seq += 1
        event = Event(self._seq, time.time(), kind, text, dpid, vm)
        self._events.append(event)
        # Wake whoever waits now; the next waiter waits on a fresh event.
        self._new.set()
        self._new = asyncio.Event()
        return event

    def on_message(self, role: str, name: str, msg: Message) -> None:
        """Record a peer's report if it is worth an event (see :func:`describe`)."""
        described = describe(role, name, msg)
        if described is not None:
            self.record(*described)

    def since(self, seq: int, limit: int = 1000) -> tuple[list[Event], int]:
        """Events after number ``seq`` (at most ``limit``), and how many after it were
        already dropped from the log."""
        if not self._events:
            return [], 0
        first = self._events[0].seq
        missed = max(0, first - seq - 1)
        start = max(0, seq + 1 - first)
        return [self._events[i] for i in range(start, min(len(self._events), start + limit))], missed

    async def wait(self, seq: int, timeout: float) -> None:
        """Return once there is an event after ``seq``, or after ``timeout`` seconds."""
        if self._seq > seq:
            return
        try:
            await asyncio.wait_for(self._new.wait(), timeout)
        except asyncio.TimeoutError:
            pass
