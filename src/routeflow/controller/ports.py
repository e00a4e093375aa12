"""The ports of each datapath, as the server hears of them. Pure: the caller sends the
:class:`DatapathJoin` and :class:`PortChange` messages returned to the server.

A datapath joins once its port description reply is complete (every part of
it); port status messages then keep its ports up to date. A datapath has at
most :data:`MAX_PORTS` ports: each is probed, and a join is one message.
"""

from __future__ import annotations

import logging

from routeflow.model import PortDesc
from routeflow.protocol.messages import DatapathJoin, PortChange

LOG = logging.getLogger("routeflow.controller")
#: Ports a datapath may have; more are ignored.
MAX_PORTS = 65536


class DatapathPorts:
    """The ports of the datapaths joined, and the port description requests joins wait for."""

    def __init__(self, limit: int = MAX_PORTS) -> None:
        self.limit = limit
        #: Ports of the datapaths reported to the server (joined), by dpid and port number.
        self.joined: dict[int, dict[int, PortDesc]] = {}
        #: The port description request a datapath's join waits for: its xid and the ports so far.
        self._requests: dict[int, tuple[int, list[PortDesc]]] = {}

    def request(self, dpid: int, xid: int) -> None:
        """``dpid`` (a new connection of it) was asked for its ports by request ``xid``. The
        ports of a connection it replaces stand (the server knows them) until the reply."""
        self._requests[dpid] = (xid, [])

    def reply(self, dpid: int, xid: int, ports: list[PortDesc], more: bool) -> list[DatapathJoin]:
        """A part of the reply to request ``xid``; ``more``: more parts follow. The join once complete."""
        request = self._requests.get(dpid)
        if request is None or request[0] != xid:
            return []
        collected = request[1]
        if len(collected) + len(ports) > self.limit:
            LOG.warning("datapath %016x: more than %d ports, the rest ignored", dpid, self.limit)
            ports = ports[:max(0, self.limit - len(collected))]
        collected += ports
        if more:
            return []
        del self._requests[dpid]
        self.joined[dpid] = {p.port_no: p for p in collected}
        return [DatapathJoin(dpid, tuple(sorted(collected)))]

    def status(self, dpid: int, port: PortDesc, deleted: bool) -> list[PortChange]:
        """A port of ``dpid`` added, changed or ``deleted``: the change, unless before the join (whose
        reply covers it) or past the limit."""
        ports = self.joined.get(dpid)
        if ports is None:
            return []
        if deleted:
            ports.pop(port.port_no, None)
        elif port.port_no not in ports and len(ports) >= self.limit:
            LOG.warning("datapath %016x: more than %d ports, port %d ignored", dpid, self.limit, port.port_no)
            return []
        else:
            ports[port.port_no] = port
        return [PortChange(dpid, port, deleted)]

    def forget(self, dpid: int) -> bool:
        """``dpid`` is gone; whether it had joined (and the server must hear it leave)."""
        self._requests.pop(dpid, None)
        return self.joined.pop(dpid, None) is not None

    def joins(self) -> list[DatapathJoin]:
        """A join of every datapath joined, for a server that may have forgotten them."""
        return [DatapathJoin(dpid, tuple(sorted(ports.values()))) for dpid, ports in self.joined.items()]
