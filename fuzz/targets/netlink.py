"""Target ``netlink``: datagrams -> ``netlink.messages`` / ``route`` / ``nexthop`` (a record or
None), ``link`` / ``address`` / ``neighbour`` (that, or ``Malformed``), and
``FibState.apply_datagram`` then ``take_delta``, ``fib``, ``resync``: never raises (optionally
on top of a golden dump's state)."""

from __future__ import annotations

import copy
import functools
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from fuzz import seeds
from fuzz.engine import Target
from fuzz.strategies import LengthField, mutated
from fuzz.targets.common import packed, stage, unpacked
from routeflow.client import netlink as rtnl
from routeflow.client.fib import FibState

#: Fixed header after nlmsghdr, by message type.
_NL_FIXED = {16: 16, 17: 16, 20: 8, 21: 8, 24: 12, 25: 12, 28: 12, 29: 12, 104: 8, 105: 8}


def netlink_length_fields(data: bytes) -> list[LengthField]:
    """nlmsghdr lengths and attribute lengths (nested and multipath ones too)."""
    fields: list[LengthField] = []

    def attributes(pos: int, end: int, depth: int) -> None:
        while pos + 4 <= end and depth < 4:
            length, kind = struct.unpack_from("=HH", data, pos)
            fields.append((pos, 2, "little"))
            if length < 4:
                return
            payload, stop = pos + 4, min(pos + length, end)
            if kind & 0x3FFF == rtnl.ATTRIBUTE["RTA_MULTIPATH"]:
                leg = payload
                while leg + 8 <= stop:
                    (leg_len,) = struct.unpack_from("=H", data, leg)
                    fields.append((leg, 2, "little"))
                    attributes(leg + 8, min(leg + leg_len, stop), depth + 1)
                    if leg_len < 8:
                        break
                    leg += (leg_len + 3) & ~3
            elif stop - payload >= 4 and 4 <= struct.unpack_from("=H", data, payload)[0] <= stop - payload:
                attributes(payload, stop, depth + 1)  # looks nested
            pos += (length + 3) & ~3

    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        fields.append((offset, 4, "little"))
        end = min(offset + length, len(data))
        fixed = _NL_FIXED.get(kind)
        if fixed is not None:
            attributes(offset + 16 + fixed, end, 0)
        if length < 16:
            break
        offset += (length + 3) & ~3
    return fields


@functools.cache
def _base_states() -> list[FibState]:
    return [FibState.load(list(dump)) for dump in seeds.netlink_dumps()]


def _fib_state(base: int) -> FibState:
    if base < 0:
        return FibState()
    return copy.deepcopy(_base_states()[base % len(_base_states())])


#: The decoders that reject a malformed message with Malformed, and the record each returns.
_NL_RECORDS: dict[int, tuple[Callable[[bytes, int, int], Any], type]] = {
    rtnl.RTM_NEWLINK: (rtnl.link, rtnl.Link), rtnl.RTM_DELLINK: (rtnl.link, rtnl.Link),
    rtnl.RTM_NEWADDR: (rtnl.address, rtnl.Address), rtnl.RTM_DELADDR: (rtnl.address, rtnl.Address),
    rtnl.RTM_NEWNEIGH: (rtnl.neighbour, rtnl.NeighbourEntry), rtnl.RTM_DELNEIGH: (rtnl.neighbour, rtnl.NeighbourEntry),
}


def check_netlink(value: tuple[int, list[bytes]]) -> None:
    base, datagrams = value
    state = _fib_state(base)
    for data in datagrams:
        for kind, _, start, end in stage("netlink.messages", lambda: list(rtnl.messages(data))):
            assert 0 <= start < end <= len(data), (start, end)
            if kind in (rtnl.RTM_NEWROUTE, rtnl.RTM_DELROUTE):
                decoded = stage("netlink.route", lambda: rtnl.route(data, start, end))
                assert decoded is None or isinstance(decoded, rtnl.KernelRoute)
            elif kind in (rtnl.RTM_NEWNEXTHOP, rtnl.RTM_DELNEXTHOP):
                obj = stage("netlink.nexthop", lambda: rtnl.nexthop(data, start, end))
                assert obj is None or isinstance(obj, rtnl.NexthopObject)
            elif kind in _NL_RECORDS:
                decode, record = _NL_RECORDS[kind]
                try:
                    decoded = stage(f"netlink.{decode.__name__}", lambda: decode(data, start, end))
                except rtnl.Malformed:
                    continue
                assert decoded is None or isinstance(decoded, record)
        stage("FibState.apply_datagram", lambda: state.apply_datagram(data))
        stage("FibState.take_delta", state.take_delta)
    stage("FibState.fib", state.fib)
    stage("FibState.nics", state.nics)
    stage("FibState.resync", lambda: state.resync(datagrams))
    stage("FibState.take_delta after resync", state.take_delta)


def netlink() -> Target:
    datagrams = seeds.netlink_datagrams()
    dumps = seeds.netlink_dumps()
    one = st.one_of(
        mutated(datagrams, fields=netlink_length_fields, orders=("little",)),
        mutated(datagrams, fields=netlink_length_fields, orders=("little",)),
        mutated(datagrams, fields=netlink_length_fields, orders=("little",), max_ops=8),
        st.sampled_from(datagrams),
        st.binary(max_size=96),
    )
    return Target(
        name="netlink",
        doc="netlink decoders and FibState.apply_datagram / take_delta / resync on kernel datagrams",
        strategy=st.tuples(st.sampled_from([-1, -1, -1, *range(len(dumps))]), st.lists(one, min_size=1, max_size=4)),
        check=check_netlink,
        seeds=lambda: [(-1, list(dump)) for dump in dumps] + [(0, step) for step in seeds.netlink_event_steps()],
        dump=lambda v: packed([v[0], v[1]]),
        load=lambda b: (unpacked(b)[0], list(unpacked(b)[1])),
        show=lambda v: f"base dump {v[0]}, datagrams " + repr([d.hex() for d in v[1]]),
    )
