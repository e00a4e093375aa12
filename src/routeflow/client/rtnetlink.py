"""Fast decoding of rtnetlink route messages, straight from the datagram bytes.

pyroute2 spends about 50 microseconds building a message object; a million
routes arriving from a BGP feed would take the client most of a minute. Route
messages are nearly all of such a burst and have a simple, stable layout
(``struct rtmsg`` and a few attributes), so they are decoded here with
``struct`` in a few microseconds each into the same
:class:`~routeflow.client.fib.KernelRoute` that
:func:`~routeflow.client.fib.parse_route` makes from pyroute2's objects.
Anything this decoder does not know returns :data:`UNHANDLED`, and the caller
uses pyroute2 for that message.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any, Final

from routeflow.client.fib import (
    FAMILIES,
    RT_TABLE_MAIN,
    RTNH_F_DEAD,
    FibState,
    KernelNextHop,
    KernelRoute,
    parse_route,
)

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_RTNEXTHOP = struct.Struct("=HBBi")
_U32 = struct.Struct("=I")

RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_MULTIPATH, RTA_TABLE, RTA_VIA = 1, 4, 5, 6, 7, 9, 15, 18


class _Unhandled:
    def __repr__(self) -> str:
        return "UNHANDLED"


#: Returned for a message this decoder leaves to pyroute2.
UNHANDLED: Final = _Unhandled()


def messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(type, flags, start, end)`` of each netlink message in a datagram."""
    offset, size = 0, len(data)
    while offset + _NLMSGHDR.size <= size:
        length, kind, flags, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > size:
            return
        yield kind, flags, offset, offset + length
        offset += (length + 3) & ~3


def _attributes(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(type, start, end)`` of each attribute between ``offset`` and ``end``."""
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            return
        yield kind & 0x3FFF, offset + 4, offset + length
        offset += (length + 3) & ~3


def _ipv4(data: bytes, start: int, end: int) -> str | None:
    return socket.inet_ntop(socket.AF_INET, data[start:end]) if end - start == 4 else None


def route(data: bytes, start: int, end: int) -> KernelRoute | None | _Unhandled:
    """Decode one RTM_NEWROUTE/RTM_DELROUTE message (``data[start:end]``).

    Same result as :func:`~routeflow.client.fib.parse_route`: None for routes
    routeflow ignores, :data:`UNHANDLED` for what only pyroute2 should decode.
    """
    body = start + _NLMSGHDR.size
    if end - body < _RTMSG.size:
        return UNHANDLED
    family, dst_len, _, tos, table, proto, _, rtype, flags = _RTMSG.unpack_from(data, body)
    if family != socket.AF_INET:
        return None if family not in FAMILIES else UNHANDLED
    if tos != 0:
        return None
    dst = gateway = prefsrc = None
    oif = None
    priority = 0
    hops: list[tuple[KernelNextHop, bool]] = []
    for kind, a, b in _attributes(data, body + _RTMSG.size, end):
        if kind == RTA_DST:
            dst = _ipv4(data, a, b)
        elif kind == RTA_OIF:
            (oif,) = _U32.unpack_from(data, a)
        elif kind == RTA_GATEWAY:
            gateway = _ipv4(data, a, b)
        elif kind == RTA_PRIORITY:
            (priority,) = _U32.unpack_from(data, a)
        elif kind == RTA_PREFSRC:
            prefsrc = _ipv4(data, a, b)
        elif kind == RTA_TABLE:
            (table,) = _U32.unpack_from(data, a)
        elif kind == RTA_MULTIPATH:
            legs = _multipath(data, a, b)
            if legs is None:
                return UNHANDLED
            hops = legs
        elif kind == RTA_VIA:
            return UNHANDLED  # IPv4 over an IPv6 next hop: rare, left to pyroute2
    if table != RT_TABLE_MAIN:
        return None
    if not hops and oif is not None:
        hops = [(KernelNextHop(oif, gateway, 1), bool(flags & RTNH_F_DEAD))]
    return KernelRoute(
        prefix=f"{dst or '0.0.0.0'}/{dst_len}",
        priority=priority,
        type=rtype,
        proto=proto,
        prefsrc=prefsrc,
        nexthops=_shared(tuple(hop for hop, _ in hops)),
        dead=_shared(tuple(dead for _, dead in hops)),
    )


@functools.lru_cache(maxsize=65536)
def _shared(value: tuple[Any, ...]) -> tuple[Any, ...]:
    """One copy of each next-hop set: a large FIB has few, shared by many routes."""
    return value


def _multipath(data: bytes, offset: int, end: int) -> list[tuple[KernelNextHop, bool]] | None:
    legs = []
    while offset + _RTNEXTHOP.size <= end:
        length, flags, hops, ifindex = _RTNEXTHOP.unpack_from(data, offset)
        if length < _RTNEXTHOP.size or offset + length > end:
            return None
        gateway = None
        for kind, a, b in _attributes(data, offset + _RTNEXTHOP.size, offset + length):
            if kind == RTA_GATEWAY:
                gateway = _ipv4(data, a, b)
            elif kind == RTA_VIA:
                return None
        legs.append((KernelNextHop(ifindex, gateway, hops + 1), bool(flags & RTNH_F_DEAD)))
        offset += (length + 3) & ~3
    return legs


# -- dumps ---------------------------------------------------------------------------

RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH = 18, 22, 26, 30
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RECV = 1 << 20


def dump(request: int, family: int = socket.AF_UNSPEC) -> list[bytes]:
    """The datagrams of one rtnetlink dump (blocking; run it in a thread).

    Raw bytes, so that route dumps go through :func:`route` rather than
    pyroute2, like events do.
    """
    # Every GET request starts with a family byte; ifinfomsg (links) is 16 bytes, the rest fit in 12.
    body = bytes([family]) + bytes(15 if request == RTM_GETLINK else 11)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * _RECV)
        sock.bind((0, 0))
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), request, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + body)
        datagrams = []
        while True:
            data = sock.recv(_RECV)
            for kind, _, start, _ in messages(data):
                if kind == _NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", data, start + _NLMSGHDR.size)
                    if error:
                        raise OSError(-error, f"netlink dump {request} failed: {os.strerror(-error)}")
                elif kind == _NLMSG_DONE:
                    datagrams.append(data)
                    return datagrams
            datagrams.append(data)


def apply_datagram(state: FibState, data: bytes, marshal: Any) -> None:
    """Apply every message of a datagram to ``state``: routes through the fast
    decoder, everything else (and what it leaves) through pyroute2's ``marshal``."""
    for kind, flags, start, end in messages(data):
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            decoded = route(data, start, end)
            if decoded is not UNHANDLED:
                if decoded is not None:
                    state.apply_route(decoded, kind == RTM_NEWROUTE, flags)  # type: ignore[arg-type]
                continue
        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
            continue
        for msg in marshal.parse(data[start:end]):
            state.apply(msg)


def routes(datagrams: list[bytes], marshal: Any) -> Iterator[KernelRoute]:
    """The routes of route-dump datagrams, in kernel order."""
    for data in datagrams:
        for kind, _, start, end in messages(data):
            if kind != RTM_NEWROUTE:
                continue
            decoded = route(data, start, end)
            if decoded is UNHANDLED:
                yield from (r for r in map(parse_route, marshal.parse(data[start:end])) if r is not None)
            elif decoded is not None:
                yield decoded  # type: ignore[misc]
