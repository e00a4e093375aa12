"""Link discovery probes: minimal LLDP frames naming the datapath and port they leave.

The controller sends one out of every port of the datapaths it probes; a probe
that comes back in a packet-in on another datapath's port proves a physical
link from the first port to the second. The frames are standard LLDP (IEEE
802.1AB) to the nearest-bridge group address, which bridges do not forward, with
a locally assigned chassis id ``dpid:<16 hex digits>`` and port id ``<port>``,
so packet captures and LLDP-aware switches read them. Pure: no I/O.
"""

from __future__ import annotations

import struct

ETH_TYPE = 0x88CC
#: Nearest-bridge group address: never forwarded by an 802.1D bridge.
DESTINATION = bytes.fromhex("0180c200000e")
#: TTL the probes announce, in seconds (they are re-sent far more often).
TTL_SECONDS = 120

_CHASSIS_ID, _PORT_ID, _TTL, _END = 1, 2, 3, 0
_LOCALLY_ASSIGNED = 7
_CHASSIS_PREFIX = b"dpid:"


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", kind << 9 | len(value)) + value


def build_probe(dpid: int, port: int, src_mac: str) -> bytes:
    """The probe frame leaving ``port`` of datapath ``dpid`` (source MAC: that port's)."""
    chassis = _CHASSIS_PREFIX + f"{dpid:016x}".encode()
    return (DESTINATION + bytes.fromhex(src_mac.replace(":", "")) + struct.pack("!H", ETH_TYPE)
            + _tlv(_CHASSIS_ID, bytes([_LOCALLY_ASSIGNED]) + chassis)
            + _tlv(_PORT_ID, bytes([_LOCALLY_ASSIGNED]) + str(port).encode())
            + _tlv(_TTL, struct.pack("!H", TTL_SECONDS))
            + _tlv(_END, b""))


def parse_probe(frame: bytes) -> tuple[int, int] | None:
    """``(dpid, port)`` a probe left from; None for any other frame, LLDP from
    other senders included. Never raises: frames come from the network."""
    if len(frame) < 14 or int.from_bytes(frame[12:14], "big") != ETH_TYPE:
        return None
    offset = 14
    chassis = port = None
    while offset + 2 <= len(frame):
        (header,) = struct.unpack_from("!H", frame, offset)
        kind, length = header >> 9, header & 0x1FF
        value = frame[offset + 2:offset + 2 + length]
        if len(value) != length or kind == _END:
            break
        if kind == _CHASSIS_ID and length > 1 and value[0] == _LOCALLY_ASSIGNED:
            chassis = value[1:]
        elif kind == _PORT_ID and length > 1 and value[0] == _LOCALLY_ASSIGNED:
            port = value[1:]
        offset += 2 + length
    if chassis is None or port is None or not chassis.startswith(_CHASSIS_PREFIX):
        return None
    hex_dpid = chassis[len(_CHASSIS_PREFIX):]
    if len(hex_dpid) != 16 or not port.isdigit():
        return None
    try:
        return int(hex_dpid, 16), int(port)
    except ValueError:
        return None
