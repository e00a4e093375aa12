"""What the RF-Server asks of its peers, and the replies that answer it: the controller's
counters and switch tables, a client's FIB read from its kernel now.

Replies are matched to their requests by id. Large replies come in parts and are used as
they arrive: a table dump compared with what verify expects part by part, a FIB gathered
for verify, a table dump the core asked for assembled whole; so no part waits in a queue
while the connection reads on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from routeflow.flows.diff import TableComparison
from routeflow.model import Fib, Route
from routeflow.protocol.messages import DumpTable, FibSnapshot, Message, SnapshotRequest, TableDump
from routeflow.server.peers import FibParts, Peer

#: How long the server waits for a reply from the controller or a client:
#: quick questions, and whole tables (a dump of a million flows takes a while).
REQUEST_TIMEOUT = 15.0
TABLE_TIMEOUT = 600.0


class PeerRequests:
    """The requests in flight, by id, and what their parts have brought so far."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[Any]] = {}
        #: Dumps compared part by part as they arrive (verify), and parts of dumps the core asked for.
        self._tables: dict[int, TableComparison] = {}
        self._parts: dict[int, list[TableDump]] = {}
        #: FIBs requested from clients, as their parts arrive.
        self._fibs: dict[int, FibParts] = {}

    def resolve(self, request_id: int, msg: Message) -> None:
        """``msg`` answers request ``request_id`` (if anyone still waits for it)."""
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def ask(self, peer: Peer | None, msg: Message, request_id: int, timeout: float = REQUEST_TIMEOUT) -> Any:
        """Send ``msg`` to ``peer`` and return its answer; ConnectionError without a peer,
        TimeoutError after ``timeout``."""
        if peer is None:
            raise ConnectionError("not connected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        peer.send(msg)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    def table_part(self, msg: TableDump) -> TableDump | None:
        """A part of a table dump: fed to its comparison, or gathered; the whole dump once its
        last part is in if it was not a comparison's (None otherwise)."""
        if msg.request_id in self._tables:
            # Consumed here, as decoded: the connection reads no further part
            # until this one is compared, so parts never pile up in memory.
            if not msg.error:
                self._tables[msg.request_id].feed(msg.flows, msg.groups)
            if not msg.more or msg.error:
                self.resolve(msg.request_id, msg)
            return None
        parts = self._parts.setdefault(msg.request_id, [])
        parts.append(msg)
        if msg.more:
            return None
        del self._parts[msg.request_id]
        if len(parts) == 1:
            return msg
        flows = tuple(f for p in parts for f in p.flows)
        return TableDump(msg.request_id, msg.dpid, flows, msg.groups, msg.error)

    def fib_part(self, msg: FibSnapshot) -> bool:
        """A part of a FIB this server asked for (True: taken), or not (False)."""
        if msg.request_id not in self._fibs:
            return False
        self._fibs[msg.request_id].add(msg.fib)
        if not msg.more:
            self.resolve(msg.request_id, msg)
        return True

    def controller_lost(self) -> None:
        """The controller is gone: its dumps will not finish."""
        self._parts.clear()
        for rid in list(self._tables):
            self.resolve(rid, TableDump(rid, 0, (), (), "controller disconnected"))

    async def compare_table(self, controller: Peer | None, request_id: int, dpid: int,
                            comparison: TableComparison) -> None:
        """Feed a switch's table to ``comparison`` part by part as the controller sends it."""
        self._tables[request_id] = comparison
        try:
            last: TableDump = await self.ask(controller, DumpTable(request_id, dpid), request_id, TABLE_TIMEOUT)
        finally:
            del self._tables[request_id]
        if last.error:
            raise ConnectionError(last.error)

    async def fresh_fib(self, client: Peer | None, request_id: int, known: dict[str, Route]) -> Fib:
        """A VM's FIB read from its kernel now, assembled as its parts arrive (``known``: the
        routes the server holds, whose equal objects the parts reuse)."""
        self._fibs[request_id] = parts = FibParts(known)
        try:
            await self.ask(client, SnapshotRequest(request_id), request_id, TABLE_TIMEOUT)
        finally:
            del self._fibs[request_id]
        return parts.fib()
