"""Raw Ethernet frames on a veth, for the tests that watch what a switch or the controller
forwards: a socket bound to one interface, a marked test frame, and the wait for it."""

from __future__ import annotations

import socket
import time

TEST_ETH_TYPE = 0x88B5  # IEEE local experimental: no stack in the way answers it
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def raw_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.settimeout(0.2)
    return sock


def frame(marker: bytes) -> bytes:
    return (bytes.fromhex("02000000aa01" "02000000aa02") + TEST_ETH_TYPE.to_bytes(2, "big") + marker).ljust(60, b"\0")


def captured(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes | None:
    """The first frame received (not sent) on ``sock`` carrying ``marker``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if addr[2] != PACKET_OUTGOING and marker in data:
            return data
    return None
