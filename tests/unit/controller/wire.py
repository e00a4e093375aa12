"""OpenFlow byte streams, taken apart for assertions."""

from __future__ import annotations

import struct


def split_messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, xid, bytes) of each OpenFlow message in ``data``, in order."""
    out = []
    while data:
        _, kind, length, xid = struct.unpack_from("!BBHI", data)
        out.append((kind, xid, data[:length]))
        data = data[length:]
    return out
