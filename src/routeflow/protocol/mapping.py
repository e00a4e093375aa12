"""Port-identification (mapping) packets, the paper's VM/switch-port discovery.

An RF-Client sends one such Ethernet frame out of every NIC it has not yet
had mapped. The frame enters the RFVS bridge, reaches the RF-Controller as a
packet-in, and the RFVS port it arrived on tells the server where that NIC is
plugged. It works unchanged for namespaces, containers and real VMs: all it
needs is that the NIC is attached to the RFVS.

Frame: broadcast destination, the NIC's MAC as source, EtherType
:data:`ETH_TYPE`, then ``MAGIC``, a version byte, and the VM name and interface
name, each as a length byte and UTF-8 text.
"""

from __future__ import annotations

from typing import NamedTuple

#: EtherType of mapping packets (the value the original RouteFlow used).
ETH_TYPE = 0x0A0A
MAGIC = b"RFMP"
VERSION = 1
_BROADCAST = b"\xff" * 6


class MappingPacket(NamedTuple):
    vm: str
    ifname: str


class MappingPacketError(ValueError):
    """Not a valid mapping packet."""


def _mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return bytes(int(p, 16) for p in parts)


def encode(vm: str, ifname: str, src_mac: str) -> bytes:
    """The Ethernet frame announcing NIC ``ifname`` of VM ``vm``."""
    payload = bytearray(MAGIC)
    payload.append(VERSION)
    for text in (vm, ifname):
        raw = text.encode()
        if not 0 < len(raw) < 256:
            raise ValueError(f"name {text!r} must be 1 to 255 bytes")
        payload.append(len(raw))
        payload += raw
    frame = _BROADCAST + _mac_bytes(src_mac) + ETH_TYPE.to_bytes(2, "big") + payload
    return bytes(frame.ljust(60, b"\0"))


def decode(frame: bytes) -> MappingPacket:
    """Parse a frame; raise :class:`MappingPacketError` if it is not a mapping packet."""
    if len(frame) < 14 + len(MAGIC) + 1 or int.from_bytes(frame[12:14], "big") != ETH_TYPE:
        raise MappingPacketError("not a mapping packet")
    payload = frame[14:]
    if payload[: len(MAGIC)] != MAGIC:
        raise MappingPacketError("bad magic")
    if payload[len(MAGIC)] != VERSION:
        raise MappingPacketError(f"unsupported mapping packet version {payload[len(MAGIC)]}")
    pos = len(MAGIC) + 1
    names = []
    for _ in range(2):
        if pos >= len(payload):
            raise MappingPacketError("truncated")
        length = payload[pos]
        pos += 1
        raw = payload[pos : pos + length]
        if length == 0 or len(raw) != length:
            raise MappingPacketError("truncated name")
        try:
            names.append(raw.decode())
        except UnicodeDecodeError as exc:
            raise MappingPacketError("name is not UTF-8") from exc
        pos += length
    return MappingPacket(names[0], names[1])
