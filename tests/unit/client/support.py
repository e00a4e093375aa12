"""Helpers of the client's unit tests: netlink messages (golden and hand-built), async tests.

Golden files (``tests/golden/netlink``) hold real kernel messages as hex; the
builders below encode synthetic ones with pyroute2, an encoder independent of
the decoder under test. Both are bytes, as the client reads them in production.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from socket import AF_INET, AF_INET6
from typing import Any, ParamSpec

from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

GOLDEN = Path(__file__).parents[2] / "golden" / "netlink"


def _encoded(msg: Any) -> bytes:
    msg.encode()
    return bytes(msg.data)


class Build:
    """Synthetic netlink messages, as the bytes the kernel would send (one
    message a datagram), encoded by pyroute2."""

    @staticmethod
    def route(
        prefix: str,
        *hops: tuple[int, str | None] | tuple[int, str | None, int],
        event: int = RTM_NEWROUTE,
        flags: int = 0,
        metric: int | None = None,
        type: int = 1,
        proto: int = 3,
        table: int = 254,
        tos: int = 0,
        nhid: int = 0,
    ) -> bytes:
        """``hops`` are ``(oif, gateway[, rtnh_flags])``; more than one makes RTA_MULTIPATH.
        The family is the prefix's; with a single hop its flags are the rtm_flags.
        ``nhid`` adds RTA_NH_ID, which pyroute2 does not encode, by hand."""
        dst, plen = prefix.split("/")
        family = _family(dst)
        msg = rtmsg()
        msg["header"]["type"], msg["header"]["flags"] = event, flags
        msg["family"], msg["dst_len"], msg["tos"], msg["type"], msg["proto"] = (
            family,
            int(plen),
            tos,
            type,
            proto,
        )
        msg["table"] = table if table < 256 else 252  # RT_TABLE_COMPAT: the real id is in RTA_TABLE
        attrs: list[list[Any]] = [["RTA_TABLE", table]]
        if int(plen):
            attrs.append(["RTA_DST", dst])
        if metric is not None:
            attrs.append(["RTA_PRIORITY", metric])
        if len(hops) == 1:
            oif, gateway, *rest = hops[0]
            attrs.append(["RTA_OIF", oif])
            if gateway:
                attrs.append(["RTA_GATEWAY", gateway])
            msg["flags"] = rest[0] if rest else 0
        elif hops:
            legs = []
            for oif, gateway, *rest in hops:
                leg_attrs = [["RTA_GATEWAY", gateway]] if gateway else []
                legs.append({"oif": oif, "hops": 0, "flags": rest[0] if rest else 0, "attrs": leg_attrs})
            attrs.append(["RTA_MULTIPATH", legs])
        msg["attrs"] = attrs
        data = _encoded(msg)
        if nhid:
            data = _with_attribute(data, 30, struct.pack("=I", nhid))
        return data

    @staticmethod
    def nexthop(nhid: int, oif: int = 0, gateway: str | None = None, group: tuple[tuple[int, int], ...] = (),
                blackhole: bool = False, event: int = 104, flags: int = 0) -> bytes:  # fmt: skip
        """An RTM_NEWNEXTHOP (104) or RTM_DELNEXTHOP (105): one next hop, a blackhole,
        or a ``group`` of ``(id, weight)``; ``flags`` are the nh_flags (RTNH_F_*)."""
        family = _family(gateway) if gateway else (0 if group else AF_INET)
        data = struct.pack("=IHHII", 24, event, 0, 0, 0) + struct.pack("=BBBBI", family, 0, 3, 0, flags)
        data = _with_attribute(data, 1, struct.pack("=I", nhid))
        if group:
            data = _with_attribute(data, 2, b"".join(struct.pack("=IBBH", m, w - 1, 0, 0) for m, w in group))
        if blackhole:
            data = _with_attribute(data, 4, b"")
        if oif:
            data = _with_attribute(data, 5, struct.pack("=I", oif))
        if gateway:
            data = _with_attribute(data, 6, socket.inet_pton(_family(gateway), gateway))
        return data

    @staticmethod
    def link(index: int, name: str, mac: str, flags: int = 0x10043, operstate: str = "UP",
             event: int = RTM_NEWLINK, family: int = 0) -> bytes:  # fmt: skip
        msg = ifinfmsg()
        msg["header"]["type"], msg["index"], msg["flags"], msg["family"] = event, index, flags, family
        msg["attrs"] = [["IFLA_IFNAME", name], ["IFLA_ADDRESS", mac], ["IFLA_OPERSTATE", operstate]]
        return _encoded(msg)

    @staticmethod
    def address(index: int, address: str, event: int = RTM_NEWADDR, peer: str | None = None,
                flags: int = 0) -> bytes:  # fmt: skip
        """IPv4 addresses as the kernel sends them (IFA_LOCAL and IFA_ADDRESS), IPv6 with
        IFA_ADDRESS only; ``flags`` (IFA_F_*) in ifa_flags and IFA_FLAGS."""
        local, plen = address.split("/")
        msg = ifaddrmsg()
        msg["header"]["type"] = event
        msg["family"], msg["index"], msg["prefixlen"], msg["flags"] = _family(local), index, int(plen), flags & 0xFF
        if msg["family"] == AF_INET:
            msg["attrs"] = [["IFA_ADDRESS", peer or local], ["IFA_LOCAL", local], ["IFA_FLAGS", flags]]
        else:
            msg["attrs"] = [["IFA_ADDRESS", local], ["IFA_FLAGS", flags]]
        return _encoded(msg)

    @staticmethod
    def neighbour(index: int, ip: str, mac: str | None, state: int = 0x02, event: int = RTM_NEWNEIGH,
                  flags: int = 0) -> bytes:  # fmt: skip
        msg = ndmsg()
        msg["header"]["type"], msg["family"], msg["ifindex"] = event, _family(ip), index
        msg["state"], msg["flags"] = state, flags
        msg["attrs"] = [["NDA_DST", ip]] + ([["NDA_LLADDR", mac]] if mac else [])
        return _encoded(msg)


def _with_attribute(message: bytes, kind: int, payload: bytes) -> bytes:
    """``message`` (one whole netlink message) with an attribute appended."""
    attr = struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)
    data = message + attr
    return struct.pack("=I", len(data)) + data[4:]


def _family(address: str) -> int:
    return AF_INET6 if ":" in address else AF_INET


P = ParamSpec("P")


def run_async(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an ``async def`` test in a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper
