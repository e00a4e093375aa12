"""A fixed-rate ICMP echo prober: ``python prober.py DST INTERVAL DURATION`` (root, run inside a
namespace). Unlike ``ping -i 0.001`` it never waits for replies before sending the next probe
(iputils paces itself on outstanding replies, so a fast ping sends almost nothing during an
outage). Prints JSON: every probe's send time and, if it came back, its reply time
(``time.time()`` seconds, comparable with the caller's clock).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"routeflow-bench!" * 3
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq & 0xFFFF) + payload


def probe(dst: str, interval: float, duration: float) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    count = int(duration / interval)
    sent: list[float] = []
    replies: list[float | None] = [None] * count
    start = time.monotonic()
    offset = time.time() - start  # monotonic -> wall clock
    end = start + duration + 1.0  # a second more for the last replies
    seq = 0
    while True:
        now = time.monotonic()
        if seq < count and now >= start + seq * interval:
            try:
                sock.sendto(echo_request(ident, seq), (dst, 0))
            except OSError:
                pass  # no route for a moment: the probe is lost like a dropped one
            sent.append(now + offset)
            seq += 1
            continue
        if now >= end:
            break
        wait = (start + seq * interval - now) if seq < count else end - now
        ready, _, _ = select.select([sock], [], [], max(0.0, wait))
        while ready:
            try:
                packet = sock.recv(2048)
            except BlockingIOError:
                break
            ihl = (packet[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
            if kind == 0 and rid == ident:
                # 16-bit sequence numbers wrap: the most recent probe with those low bits.
                base = (seq - 1) - ((seq - 1 - rseq) & 0xFFFF)
                if 0 <= base < count and replies[base] is None:
                    replies[base] = time.monotonic() + offset
    return {"sent": sent, "reply": replies[:len(sent)]}


if __name__ == "__main__":
    json.dump(probe(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])), sys.stdout)
