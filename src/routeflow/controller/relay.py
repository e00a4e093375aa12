"""The slow path: packet-ins classified, relayed, reported or dropped, and counted.

Pure: the caller passes the time and the datapaths connected, and sends what
comes back. A packet from a switch port goes out of the RFVS port of the VM NIC
mirroring it, and back the other way, as the server's :class:`RelayMap` pairs
them. A VLAN sub-interface's frames are paired by port and tag: the tag comes off
on the way to the VM NIC and goes back on on the way out. Two kinds are not relayed: a port-identification (mapping) packet from a
VM is reported to the server (:class:`MappingSeen`), and a discovery probe
between switches goes to the :class:`~routeflow.controller.discovery.Prober`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Container

import msgspec
from os_ken.ofproto import ofproto_v1_3 as ofp

from routeflow.controller.actions import Action, PacketOut
from routeflow.controller.classify import traffic_kind
from routeflow.controller.discovery import Prober
from routeflow.model import IfName
from routeflow.protocol import lldp, mapping
from routeflow.protocol.messages import ControllerStats, MappingSeen, RelayMap

LOG = logging.getLogger("routeflow.controller")
_MAPPING_ETH_TYPE = mapping.ETH_TYPE.to_bytes(2, "big")
_LLDP_ETH_TYPE = lldp.ETH_TYPE.to_bytes(2, "big")
_DOT1Q = b"\x81\x00"
#: Largest frame a packet-out can relay: its header and one output action take 40 bytes.
MAX_RELAY = 0xFFFF - ofp.OFP_PACKET_OUT_SIZE - ofp.OFP_ACTION_OUTPUT_SIZE


class SlowPath:
    """The relay table, the RFVS datapaths, and the counters the server asks for in a
    :class:`~routeflow.protocol.messages.StatsRequest`."""

    def __init__(self, prober: Prober) -> None:
        self.prober = prober
        #: The datapaths of the RFVS switch, where the VM NICs are.
        self.rfvs: frozenset[int] = frozenset()
        #: Datapaths the server rejected: their packet-ins go nowhere.
        self.rejected: set[int] = set()
        #: (dpid, port, vlan or 0) -> (rfvs dpid, rfvs port), and back.
        self._to_rfvs: dict[tuple[int, int, int], tuple[int, int]] = {}
        self._from_rfvs: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.packet_in: Counter[int] = Counter()
        #: (dpid, traffic kind) -> packet-ins, so data traffic in the slow path shows.
        self.packet_in_kinds: Counter[tuple[int, str]] = Counter()
        self.packet_out: Counter[int] = Counter()
        self.dropped: Counter[int] = Counter()

    def set_map(self, relay: RelayMap) -> None:
        """Replace the relay table."""
        self._to_rfvs = {(e.dpid, e.port, e.vlan): (e.rfvs_dpid, e.rfvs_port) for e in relay.entries}
        self._from_rfvs = {(e.rfvs_dpid, e.rfvs_port): (e.dpid, e.port, e.vlan) for e in relay.entries}
        LOG.info("relay map: %d entries", len(relay.entries))

    def receive(self, dpid: int, in_port: int | None, data: bytes, total_len: int, connected: Container[int],
                now: float) -> list[Action]:
        """A packet-in from port ``in_port`` of ``dpid`` (None: a packet-in too malformed to name one) of
        ``total_len`` bytes, ``data`` of them included; ``connected``: the datapaths it may go out of."""
        self.packet_in[dpid] += 1
        if in_port is None:
            LOG.debug("datapath %016x: malformed packet-in dropped", dpid)
            return self._drop(dpid)
        if dpid in self.rejected:
            return self._drop(dpid)
        self.packet_in_kinds[dpid, traffic_kind(data)] += 1
        on_rfvs = dpid in self.rfvs
        if on_rfvs and data[12:14] == _MAPPING_ETH_TYPE:
            return self._mapping_packet(dpid, in_port, data)
        if not on_rfvs and data[12:14] == _LLDP_ETH_TYPE:
            changes = self.prober.seen(data, dpid, in_port, now)
            return self._drop(dpid) if changes is None else list(changes)
        # A truncated packet (switch ignored miss_send_len) cannot be relayed faithfully.
        if len(data) < total_len:
            return self._drop(dpid)
        target = self._up(dpid, in_port, data) if on_rfvs else self._down(dpid, in_port, data)
        if target is None or target[0] not in connected or len(target[2]) > MAX_RELAY:
            return self._drop(dpid)
        return [PacketOut(target[0], target[1], target[2], relayed=True)]

    def _down(self, dpid: int, in_port: int, data: bytes) -> tuple[int, int, bytes] | None:
        """Where a frame from a switch port goes on the RFVS, and as what: a tagged frame
        of a VLAN sub-interface untagged; any other frame of an untagged port as it came."""
        if data[12:14] == _DOT1Q and len(data) >= 18:
            vid = int.from_bytes(data[14:16], "big") & 0xFFF
            target = self._to_rfvs.get((dpid, in_port, vid)) if vid else None
            if target is not None:
                return target[0], target[1], data[:12] + data[16:]
        target = self._to_rfvs.get((dpid, in_port, 0))
        return None if target is None else (target[0], target[1], data)

    def _up(self, dpid: int, in_port: int, data: bytes) -> tuple[int, int, bytes] | None:
        """Where a frame from a VM NIC's RFVS port goes on its switch, tagged if its NIC is a VLAN's."""
        target = self._from_rfvs.get((dpid, in_port))
        if target is None:
            return None
        switch, port, vlan = target
        if vlan and len(data) >= 14:
            data = data[:12] + _DOT1Q + vlan.to_bytes(2, "big") + data[12:]
        return switch, port, data

    def relayed(self, dpid: int) -> None:
        """A relayed packet went out of ``dpid``."""
        self.packet_out[dpid] += 1

    def stats(self, request_id: int, refused: dict[int, int]) -> ControllerStats:
        """The counters, in reply to request ``request_id``; ``refused``: connections refused by datapath id."""
        kinds: dict[int, dict[str, int]] = {}
        for (dpid, kind), count in self.packet_in_kinds.items():
            kinds.setdefault(dpid, {})[kind] = count
        return ControllerStats(request_id, dict(self.packet_in), dict(self.packet_out), packet_in_by_kind=kinds,
                               dropped=dict(self.dropped), refused=refused)

    def _drop(self, dpid: int) -> list[Action]:
        self.dropped[dpid] += 1
        return []

    def _mapping_packet(self, dpid: int, port: int, data: bytes) -> list[Action]:
        try:
            packet = mapping.decode(data)
            # the server refuses (and hangs up on) a message with a name no interface can have
            msgspec.convert(packet.ifname, IfName)
        except (mapping.MappingPacketError, msgspec.ValidationError) as exc:
            LOG.debug("rfvs %016x port %d: bad mapping packet: %s", dpid, port, exc)
            return self._drop(dpid)
        LOG.debug("mapping packet from %s/%s on rfvs port %d", packet.vm, packet.ifname, port)
        return [MappingSeen(dpid, port, packet.vm, packet.ifname)]
