"""Table dumps in progress: what the server asked for, what the switch sent back so far,
and when each dump gives up. Pure: the caller passes the time, and sends the
:class:`TableDump` replies returned to the server.

A dump is two multipart requests to one datapath (flow stats and group
descriptions), known by their transaction ids. Whole parts of
:data:`DUMP_PART` flows go to the server as the switch's replies come in, so a
dump is never held whole (a million flows decoded are hundreds of MB); the
rest, with the groups, when both requests are answered. A dump fails when the
switch sends no reply part for :data:`DUMP_TIMEOUT` seconds, errs, or goes away.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from routeflow.model import Flow, Group
from routeflow.protocol.messages import TableDump, parts

LOG = logging.getLogger("routeflow.controller")

#: A dump fails when the switch sends no reply part for this long (a large
#: table takes longer than this in all; each part restarts the clock).
DUMP_TIMEOUT = 10.0
#: Flows per TableDump part sent to the server.
DUMP_PART = 10_000


@dataclass
class _Dump:
    """A table dump in progress: two multipart requests and what came back so far."""

    request_id: int
    dpid: int
    xids: tuple[int, int]  # flow stats, group desc
    deadline: float
    flows: list[Flow] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    waiting: set[int] = field(default_factory=set)


class TableDumps:
    """The table dumps in progress, by (dpid, xid) of either of their requests."""

    def __init__(self, timeout: float = DUMP_TIMEOUT, part: int = DUMP_PART) -> None:
        self.timeout = timeout
        self.part = part
        self._dumps: dict[tuple[int, int], _Dump] = {}

    def __bool__(self) -> bool:
        return bool(self._dumps)

    def start(self, request_id: int, dpid: int, xids: tuple[int, int], now: float) -> None:
        """Server request ``request_id``: dump ``dpid`` by the requests of ``xids`` (flow stats, group desc)."""
        dump = _Dump(request_id, dpid, xids, now + self.timeout, waiting=set(xids))
        for xid in xids:
            self._dumps[(dpid, xid)] = dump

    def expects(self, dpid: int, xid: int) -> bool:
        """Whether a reply (or error) of ``xid`` from ``dpid`` belongs to a dump in progress."""
        return (dpid, xid) in self._dumps

    def reply(self, dpid: int, xid: int, flows: Sequence[Flow], groups: Sequence[Group], more: bool,
              now: float) -> list[TableDump]:
        """A reply part to request ``xid``, decoded; ``more``: the switch sends more parts of it."""
        dump = self._dumps.get((dpid, xid))
        if dump is None:  # unasked for, or too late
            return []
        dump.flows += flows
        dump.groups += groups
        dump.deadline = now + self.timeout
        if not more:
            dump.waiting.discard(xid)
        if not dump.waiting:
            return self._finish(dump)
        out = []
        while len(dump.flows) >= self.part:
            out.append(TableDump(dump.request_id, dpid, tuple(dump.flows[:self.part]), (), more=True))
            del dump.flows[:self.part]
        return out

    def fail(self, dpid: int, xid: int, error: str) -> list[TableDump]:
        """The dump request ``xid`` belongs to failed (an error reply, an unreadable one)."""
        dump = self._dumps.get((dpid, xid))
        return [] if dump is None else self._finish(dump, error)

    def fail_datapath(self, dpid: int, error: str) -> list[TableDump]:
        """Every dump of ``dpid`` fails: its connection ended or was replaced."""
        dumps = {id(d): d for (d_dpid, _), d in self._dumps.items() if d_dpid == dpid}
        return [reply for dump in dumps.values() for reply in self._finish(dump, error)]

    def expire(self, now: float) -> list[TableDump]:
        """Dumps the switch sent nothing for in ``timeout`` seconds fail."""
        late = {id(d): d for d in self._dumps.values() if now >= d.deadline}
        return [reply for dump in late.values() for reply in self._finish(dump, "timed out")]

    def next_deadline(self) -> float:
        """When the next dump times out, unless a reply comes first; infinity if none is in progress."""
        return min((d.deadline for d in self._dumps.values()), default=math.inf)

    def _finish(self, dump: _Dump, error: str = "") -> list[TableDump]:
        for xid in dump.xids:
            self._dumps.pop((dump.dpid, xid), None)
        if error:
            LOG.warning("datapath %016x: table dump failed: %s", dump.dpid, error)
            return [TableDump(dump.request_id, dump.dpid, (), (), error)]
        return [TableDump(dump.request_id, dump.dpid, tuple(chunk), () if more else tuple(dump.groups), more=more)
                for chunk, more in parts(dump.flows, self.part)]
