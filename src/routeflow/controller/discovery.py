"""Which physical links exist, from discovery probes seen (or missed). Pure: the
caller passes the time and sends what comes back (link changes to the server,
probes out of switch ports).

A link is directed: probes leaving ``src`` arrive at ``dst``. It is up from its
first sighting until a port at either end goes down (at once) or no probe
crossed it for ``timeout`` seconds (a silent failure, or a recabling).
:class:`LinkTable` keeps the links; :class:`Prober` decides which ports to
probe, and when, for the datapaths of the server's :class:`DiscoveryPlan`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp

from routeflow.controller.actions import PacketOut
from routeflow.model import PortDesc
from routeflow.protocol import lldp
from routeflow.protocol.messages import DiscoveryPlan, LinkChange

LOG = logging.getLogger("routeflow.controller")
#: A link no probe crossed for this many probe intervals is lost.
LINK_TIMEOUT_INTERVALS = 3.5

#: The ports of each datapath joined, by dpid and port number.
Ports = Mapping[int, Mapping[int, PortDesc]]

#: A datapath port: (dpid, port number).
Port = tuple[int, int]


@dataclass(frozen=True)
class Change:
    """A directed link came up or went down."""

    src: Port
    dst: Port
    up: bool


@dataclass
class LinkTable:
    timeout: float
    #: (src, dst) -> when a probe last crossed it.
    last_seen: dict[tuple[Port, Port], float] = field(default_factory=dict)

    def seen(self, src: Port, dst: Port, now: float) -> list[Change]:
        """A probe from ``src`` arrived at ``dst``. A port has one peer: a new one replaces the old."""
        changes = []
        key = (src, dst)
        if key not in self.last_seen:
            stale = [k for k in self.last_seen if k[1] == dst or k[0] == src]
            changes = [self._drop(k) for k in stale]
            changes.append(Change(src, dst, True))
        self.last_seen[key] = now
        return changes

    def expire(self, now: float) -> list[Change]:
        """Links no probe crossed for ``timeout`` seconds go down."""
        return [self._drop(k) for k, t in list(self.last_seen.items()) if now - t > self.timeout]

    def port_down(self, port: Port) -> list[Change]:
        """A port lost its link (or was deleted): every link at it goes down at once."""
        return [self._drop(k) for k in list(self.last_seen) if port in k]

    def datapath_gone(self, dpid: int) -> list[Change]:
        return [self._drop(k) for k in list(self.last_seen) if k[0][0] == dpid or k[1][0] == dpid]

    def _drop(self, key: tuple[Port, Port]) -> Change:
        del self.last_seen[key]
        return Change(key[0], key[1], False)


class Prober:
    """LLDP discovery: probes out of every port of the planned datapaths each
    interval, and the links they find (or stop finding) as :class:`LinkChange`."""

    def __init__(self, interval: float = 1.0) -> None:
        self.dpids: frozenset[int] = frozenset()
        self.interval = interval
        self.links = LinkTable(LINK_TIMEOUT_INTERVALS * interval)
        #: When the next round of probes (and expiry of silent links) is due.
        self.next_round = 0.0

    def plan(self, plan: DiscoveryPlan, ports: Ports, now: float) -> list[LinkChange | PacketOut]:
        """Probe the ports of ``plan.dpids`` from now on, starting at once; links elsewhere are forgotten."""
        self.dpids = frozenset(plan.dpids)
        self.interval = plan.interval
        self.links.timeout = LINK_TIMEOUT_INTERVALS * plan.interval
        self.next_round = now + plan.interval
        out: list[LinkChange | PacketOut] = []
        for dpid in set(ports) - self.dpids:
            out += self._report(self.links.datapath_gone(dpid))
        LOG.info("discovery: probing %d datapaths every %.1f s", len(plan.dpids), plan.interval)
        return out + self._probes(ports)

    def tick(self, ports: Ports, now: float) -> list[LinkChange | PacketOut]:
        """If a round is due: links no probe crossed for a while go down, and every planned port is probed."""
        if now < self.next_round:
            return []
        self.next_round = now + self.interval
        return [*self._report(self.links.expire(now)), *self._probes(ports)]

    def seen(self, frame: bytes, dpid: int, port: int, now: float) -> list[LinkChange] | None:
        """An LLDP frame arrived at ``port`` of ``dpid``: the link changes it tells of, None to drop it
        (foreign LLDP, a probe from a plan since replaced, or from no port we probe)."""
        source = lldp.parse_probe(frame)
        if source is None or source[0] not in self.dpids or source[1] >= ofp.OFPP_MAX:
            return None
        return self._report(self.links.seen(source, (dpid, port), now))

    def port_changed(self, dpid: int, port: PortDesc, deleted: bool) -> list[LinkChange | PacketOut]:
        """A port went down or was deleted (its links go down at once), or came up (probed at once,
        so that a link back up is wired again without waiting for the next round)."""
        if deleted or not port.up:
            return list(self._report(self.links.port_down((dpid, port.port_no))))
        return self._probes({dpid: {port.port_no: port}})

    def datapath_gone(self, dpid: int) -> list[LinkChange]:
        """Every link at ``dpid`` goes down."""
        return self._report(self.links.datapath_gone(dpid))

    def known(self) -> list[LinkChange]:
        """Every link up, for a server that may have forgotten them (reconnected, or restarted)."""
        return [LinkChange(*src, *dst, True) for src, dst in self.links.last_seen]

    def _probes(self, ports: Ports) -> list[LinkChange | PacketOut]:
        """A probe out of each port that is up of the planned datapaths among ``ports``."""
        return [PacketOut(dpid, port.port_no, lldp.build_probe(dpid, port.port_no, port.mac))
                for dpid in self.dpids for port in ports.get(dpid, {}).values() if port.up]

    @staticmethod
    def _report(changes: list[Change]) -> list[LinkChange]:
        for change in changes:
            LOG.info("link %016x:%d -> %016x:%d %s", *change.src, *change.dst, "up" if change.up else "down")
        return [LinkChange(*change.src, *change.dst, change.up) for change in changes]
