"""What kind of traffic a slow-path packet is, for the controller's counters.

Operators (and the demo) read these to see that data traffic stays in the
fast path while routing protocols and ARP keep using the slow path.
"""

from __future__ import annotations

from routeflow.protocol import lldp, mapping

_IP_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 89: "ospf"}
_VLAN_TYPES = (0x8100, 0x88A8)
#: ICMPv6 link control, reported as ``nd``: multicast listener query/report/done (MLD,
#: 130-132 and 143), router and neighbour solicitation/advertisement, redirect (133-137).
_ND_TYPES = frozenset({130, 131, 132, 133, 134, 135, 136, 137, 143})


def traffic_kind(frame: bytes) -> str:
    """``arp``, ``nd``, ``icmp``, ``icmpv6``, ``ospf``, ``tcp``, ``udp``, ``ip``, ``mapping``, ``lldp``
    or ``other``."""
    if len(frame) < 14:
        return "other"
    eth_type = int.from_bytes(frame[12:14], "big")
    offset = 14
    while eth_type in _VLAN_TYPES and len(frame) >= offset + 4:
        eth_type = int.from_bytes(frame[offset + 2 : offset + 4], "big")
        offset += 4
    if eth_type == 0x0806:
        return "arp"
    if eth_type == mapping.ETH_TYPE:
        return "mapping"
    if eth_type == lldp.ETH_TYPE:
        return "lldp"
    if eth_type == 0x0800 and len(frame) >= offset + 10:
        return _IP_PROTOCOLS.get(frame[offset + 9], "ip")
    if eth_type == 0x86DD and len(frame) >= offset + 7:
        next_header = frame[offset + 6]
        # Neighbour discovery and MLD are ICMPv6 too, but they are the ARP and IGMP of IPv6.
        if next_header == 58 and len(frame) > offset + 40 and frame[offset + 40] in _ND_TYPES:
            return "nd"
        return _IP_PROTOCOLS.get(next_header, "ip")
    return "other"
