"""Fast decoding of rtnetlink route messages, straight from the datagram bytes.

pyroute2 spends about 50 microseconds building a message object; a million
routes arriving from a BGP feed would take the client most of a minute. Route
messages are nearly all of such a burst and have a simple, stable layout
(``struct rtmsg`` and a few attributes, IPv4 or IPv6), so they are decoded here with
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
    ANY_ADDRESS,
    FAMILIES,
    RT_TABLE_MAIN,
    RTM_F_CLONED,
    RTNH_F_DEAD,
    FibState,
    KernelNextHop,
    KernelRoute,
    canonical_ip,
    ipv6_noise,
    parse_route,
)

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_RTNEXTHOP = struct.Struct("=HBBi")
_U32 = struct.Struct("=I")
_U16 = struct.Struct("=H")

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


#: Address bytes of each family decoded here.
_WIDTH: dict[int, int] = {socket.AF_INET: 4, socket.AF_INET6: 16}


def _ip(family: int, data: bytes, start: int, end: int) -> str | None:
    if end - start != _WIDTH[family]:
        return None
    text = socket.inet_ntop(family, data[start:end])
    return canonical_ip(text) if family == socket.AF_INET6 else text


def _via(data: bytes, start: int, end: int) -> str | None | _Unhandled:
    """RTA_VIA (``struct rtvia``: a family, then the address): a gateway of
    another family than the route's, such as IPv4 over IPv6 (RFC 5549)."""
    if end - start < 2:
        return UNHANDLED
    (family,) = _U16.unpack_from(data, start)
    if family not in _WIDTH or end - start - 2 != _WIDTH[family]:
        return UNHANDLED
    return _ip(family, data, start + 2, end)


def route(data: bytes, start: int, end: int) -> KernelRoute | None | _Unhandled:
    """Decode one RTM_NEWROUTE/RTM_DELROUTE message (``data[start:end]``).

    Same result as :func:`~routeflow.client.fib.parse_route`: None for routes
    routeflow ignores, :data:`UNHANDLED` for what only pyroute2 should decode.
    """
    body = start + _NLMSGHDR.size
    if end - body < _RTMSG.size:
        return UNHANDLED
    family, dst_len, _, tos, table, proto, _, rtype, flags = _RTMSG.unpack_from(data, body)
    if family not in _WIDTH:
        return None if family not in FAMILIES else UNHANDLED
    if tos != 0 or flags & RTM_F_CLONED:
        return None
    dst = gateway = prefsrc = None
    oif = None
    priority = 0
    hops: list[tuple[KernelNextHop, bool]] = []
    for kind, a, b in _attributes(data, body + _RTMSG.size, end):
        if kind == RTA_DST:
            dst = _ip(family, data, a, b)
        elif kind == RTA_OIF:
            (oif,) = _U32.unpack_from(data, a)
        elif kind == RTA_GATEWAY:
            gateway = _ip(family, data, a, b)
        elif kind == RTA_PRIORITY:
            (priority,) = _U32.unpack_from(data, a)
        elif kind == RTA_PREFSRC:
            prefsrc = _ip(family, data, a, b)
        elif kind == RTA_TABLE:
            (table,) = _U32.unpack_from(data, a)
        elif kind == RTA_MULTIPATH:
            legs = _multipath(family, data, a, b)
            if legs is None:
                return UNHANDLED
            hops = legs
        elif kind == RTA_VIA:
            via = _via(data, a, b)
            if via is UNHANDLED:
                return UNHANDLED
            gateway = via  # type: ignore[assignment]
    if table != RT_TABLE_MAIN:
        return None
    dst = dst or ANY_ADDRESS[family]
    if family == socket.AF_INET6 and ipv6_noise(dst, dst_len):
        return None
    if not hops and oif is not None:
        hops = [(KernelNextHop(oif, gateway, 1), bool(flags & RTNH_F_DEAD))]
    return KernelRoute(
        prefix=f"{dst}/{dst_len}",
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


def _multipath(family: int, data: bytes, offset: int, end: int) -> list[tuple[KernelNextHop, bool]] | None:
    legs = []
    while offset + _RTNEXTHOP.size <= end:
        length, flags, hops, ifindex = _RTNEXTHOP.unpack_from(data, offset)
        if length < _RTNEXTHOP.size or offset + length > end:
            return None
        gateway = None
        for kind, a, b in _attributes(data, offset + _RTNEXTHOP.size, offset + length):
            if kind == RTA_GATEWAY:
                gateway = _ip(family, data, a, b)
            elif kind == RTA_VIA:
                via = _via(data, a, b)
                if via is UNHANDLED:
                    return None
                gateway = via  # type: ignore[assignment]
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
