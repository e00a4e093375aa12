"""routeflow.client.fib, IPv6: ECMP legs in both kernel encodings, link-local next hops,
what is not forwarding state, neighbours and addresses (the golden captures are in
test_client_fib.py, scenario ``ipv6``)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from pyroute2.netlink import NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE
from pyroute2.netlink.rtnl import RTM_DELNEIGH, RTM_DELROUTE, RTM_NEWADDR

from routeflow.client.fib import FibState
from routeflow.model import Interface, Neighbour, NextHop, Route
from routeflow.protocol.messages import FibDelta

LO = (1, "lo", "00:00:00:00:00:00", 0x10049, "UNKNOWN")
ETH0 = (2, "eth0", "02:00:00:00:00:02")
ETH1 = (3, "eth1", "02:00:00:00:00:03")
P = "2001:db8:10::/48"
A, B, C = (2, "2001:db8::a"), (3, "fe80::b"), (3, "2001:db8:1::c")
HOP_A, HOP_B, HOP_C = NextHop("eth0", "2001:db8::a"), NextHop("eth1", "fe80::b"), NextHop("eth1", "2001:db8:1::c")
ADD, APPEND, REPLACE = NLM_F_CREATE | NLM_F_EXCL, NLM_F_CREATE | NLM_F_APPEND, NLM_F_CREATE | NLM_F_REPLACE


def _state(build: Any, *messages: Any) -> FibState:
    return FibState.load([build.link(*LO), build.link(*ETH0), build.link(*ETH1), *messages])


def _route(state: FibState, prefix: str = P) -> Route | None:
    state.take_delta()
    return {route.prefix: route for route in state.fib().routes}.get(prefix)


# -- ECMP -----------------------------------------------------------------------------


def test_ecmp_is_the_same_from_one_multipath_message_or_appended_legs(build: Any) -> None:
    """Newer kernels report a group as RTA_MULTIPATH; older ones (and FRR without nexthop
    groups) as one message per leg with NLM_F_APPEND. Dumps likewise."""
    expected = Route(P, (HOP_A, HOP_C, HOP_B), proto="ospf")
    multipath = _state(build, build.route(P, A, B, C, metric=20, proto=188))
    legs = _state(build, build.route(P, A, metric=20, proto=188, flags=ADD))
    legs.apply_datagram(build.route(P, B, metric=20, proto=188, flags=APPEND))
    legs.apply_datagram(build.route(P, C, metric=20, proto=188, flags=APPEND))
    dumped = _state(build)
    dumped.resync([build.route(P, A, metric=20, proto=188), build.route(P, B, metric=20, proto=188),
                           build.route(P, C, metric=20, proto=188)])  # fmt: skip
    assert _route(multipath) == _route(legs) == _route(dumped) == expected
    assert _route(legs) == Route(P, (HOP_A, HOP_C, HOP_B), proto="ospf")  # sorted, not arrival order


def test_deleting_legs_one_by_one_or_the_whole_group(build: Any) -> None:
    state = _state(build, build.route(P, A, B, C, metric=20))
    state.apply_datagram(build.route(P, B, metric=20, event=RTM_DELROUTE))  # `ip -6 route del P via fe80::b`
    assert state.take_delta() == FibDelta(routes_set=(Route(P, (HOP_A, HOP_C), proto="boot"),))
    state.apply_datagram(build.route(P, B, metric=20, event=RTM_DELROUTE))  # again: nothing left to delete
    assert state.take_delta() is None
    state.apply_datagram(build.route(P, A, C, metric=20, event=RTM_DELROUTE))  # `ip -6 route del P`
    assert state.take_delta() == FibDelta(routes_del=(P,))


def test_an_append_reports_the_whole_group_with_the_new_legs_protocol(build: Any) -> None:
    # The kernel notifies the appended route first, its siblings after it, all under its protocol.
    state = _state(build, build.route(P, A, metric=20, proto=4, flags=ADD))
    state.apply_datagram(build.route(P, C, A, metric=20, proto=3, flags=APPEND))
    assert _route(state) == Route(P, (HOP_A, HOP_C), proto="static")  # the first leg's, as a dump says
    state.apply_datagram(build.route(P, C, metric=20, proto=3, event=RTM_DELROUTE))
    assert _route(state) == Route(P, (HOP_A,), proto="static")


def test_replace_takes_out_the_whole_group(build: Any) -> None:
    state = _state(build, build.route(P, A, B, metric=20), build.route(P, (2, "2001:db8::9"), metric=50))
    state.apply_datagram(build.route(P, C, metric=20, flags=REPLACE))
    assert _route(state) == Route(P, (HOP_C,), proto="boot")
    state.apply_datagram(build.route(P, A, B, metric=20, flags=REPLACE))
    assert _route(state) == Route(P, (HOP_A, HOP_B), proto="boot")
    state.apply_datagram(build.route(P, A, B, metric=20, event=RTM_DELROUTE))
    assert _route(state) == Route(P, (NextHop("eth0", "2001:db8::9"),), proto="boot")  # metric 50 remains


def test_a_replayed_group_message_changes_nothing(build: Any) -> None:
    state = _state(build, build.route(P, A, metric=20, flags=ADD))
    append = build.route(P, C, A, metric=20, flags=APPEND)
    state.apply_datagram(append)
    state.take_delta()
    state.apply_datagram(append)
    state.apply_datagram(build.route(P, A, metric=20, flags=ADD))
    assert state.take_delta() is None


def test_only_gateway_routes_of_the_best_metric_form_the_group(build: Any) -> None:
    state = _state(build, build.route(P, (2, None), metric=20), build.route(P, A, metric=20, flags=APPEND),
                   build.route(P, C, metric=30, flags=APPEND))  # fmt: skip
    assert _route(state) == Route(P, (NextHop("eth0"),), proto="boot")  # a device route: no siblings
    state.apply_datagram(build.route(P, (2, None), metric=20, event=RTM_DELROUTE))
    assert _route(state) == Route(P, (HOP_A,), proto="boot")  # metric 30 is no sibling of 20


def test_dead_legs_are_dropped_and_a_dead_group_falls_back(build: Any) -> None:
    state = _state(build, build.route(P, (2, "2001:db8::9"), metric=50))
    state.apply_datagram(build.route(P, (2, "2001:db8::a", 1), (3, "fe80::b", 16), metric=10))  # 16: linkdown only
    assert _route(state) == Route(P, (HOP_B,), proto="boot")
    state.resync([
        build.route(P, (2, "2001:db8::a", 1), (3, "fe80::b", 1), metric=10),
        build.route(P, (2, "2001:db8::9"), metric=50),
    ])  # fmt: skip
    assert _route(state) == Route(P, (NextHop("eth0", "2001:db8::9"),), proto="boot")


# -- what is and is not forwarding state --------------------------------------------


def test_link_local_gateways_keep_their_interface(build: Any) -> None:
    state = _state(build, build.route("::/0", (3, "fe80::1")), build.neighbour(3, "fe80::1", "02:00:00:00:01:01"))
    assert _route(state, "::/0") == Route("::/0", (NextHop("eth1", "fe80::1"),), proto="boot")
    assert state.fib().neighbours == (Neighbour("eth1", "fe80::1", "02:00:00:00:01:01"),)


def test_kernel_noise_is_not_reported(build: Any) -> None:
    state = _state(build)
    state.apply_datagram(build.route("fe80::/64", (2, None), metric=256, proto=2))  # per-interface link-local
    state.apply_datagram(build.route("ff00::/8", (2, None), metric=256, proto=2, table=255, type=5))  # multicast
    state.apply_datagram(build.route("ff05::/16", (2, None)))  # multicast in main
    state.apply_datagram(build.route("2001:db8::1/128", (2, None), table=255, type=2))  # local table
    state.apply_datagram(build.route("2001:db8::/128", (2, None), table=255, type=4))  # subnet-router anycast
    state.apply_datagram(build.route("2001:db8:7::/48", (2, "2001:db8::7", 0x200)))  # RTM_F_CLONED: an exception
    state.apply_datagram(build.route("::1/128", (1, None), metric=256, proto=2))  # the loopback's own prefix
    state.apply_datagram(build.route("2001:db8:ff::1/128", (1, None), metric=256, proto=2))  # a router-id on lo
    assert state.take_delta() is None


def test_routes_that_forward_are_reported(build: Any) -> None:
    state = _state(build)
    state.apply_datagram(build.route("2001:db8:9::/48", (1, None)))  # by hand through lo: not the kernel's own
    state.apply_datagram(build.route("2001:db8:1::/64", (3, None), metric=256, proto=2))  # connected
    state.apply_datagram(build.route("2001:db8:40::/48", (1, None), type=6))  # IPv6 reject routes use lo
    state.apply_datagram(build.route("2001:db8:41::/48", (1, None), type=7, proto=12))
    assert state.fib().routes == ()
    state.take_delta()
    assert state.fib().routes == (
        Route("2001:db8:1::/64", (NextHop("eth1"),), proto="kernel"),
        Route("2001:db8:40::/48", (), "blackhole", "boot"),
        Route("2001:db8:41::/48", (), "unreachable", "bird"),
        Route("2001:db8:9::/48", (NextHop("lo"),), proto="boot"),
    )


# -- neighbours and addresses ---------------------------------------------------------


def test_neighbour_states_router_and_proxy_flags(build: Any) -> None:
    state = _state(build)
    entries = [
        ("2001:db8::1", 0x02, "02:00:00:00:00:01", 0x80),  # REACHABLE, a router: kept
        ("2001:db8::2", 0x04, "02:00:00:00:00:02", 0),  # STALE
        ("2001:db8::3", 0x08, "02:00:00:00:00:03", 0),  # DELAY
        ("2001:db8::4", 0x10, "02:00:00:00:00:04", 0x80),  # PROBE
        ("2001:db8::5", 0x80, "02:00:00:00:00:05", 0),  # PERMANENT
        ("2001:db8::6", 0x40, "02:00:00:00:00:06", 0),  # NOARP
        ("2001:db8::7", 0x01, None, 0),  # INCOMPLETE
        ("2001:db8::8", 0x20, "02:00:00:00:00:08", 0x80),  # FAILED
        ("2001:db8::9", 0x80, None, 0x08),  # proxy
        ("ff02::1:ff00:1", 0x40, "33:33:ff:00:00:01", 0),  # multicast
    ]
    for ip, nud, mac, flags in entries:
        state.apply_datagram(build.neighbour(2, ip, mac, nud, flags=flags))
    delta = state.take_delta()
    assert delta is not None
    assert [n.ip for n in delta.neighbours_set] == [f"2001:db8::{n}" for n in range(1, 7)]
    state.apply_datagram(build.neighbour(2, "2001:db8::1", "02:00:00:00:00:01", 0x02))  # no longer a router
    assert state.take_delta() is None
    state.apply_datagram(build.neighbour(2, "2001:db8::2", None, 0x20))
    state.apply_datagram(build.neighbour(2, "2001:db8::3", None, 0, event=RTM_DELNEIGH))
    assert state.take_delta() == FibDelta(neighbours_del=(("eth0", "2001:db8::2"), ("eth0", "2001:db8::3")))


IFA_F_TENTATIVE, IFA_F_DADFAILED, IFA_F_PERMANENT = 0x40, 0x08, 0x80


def test_addresses_link_local_included_tentative_and_failed_left_out(build: Any) -> None:
    state = _state(
        build,
        build.address(1, "::1/128", flags=IFA_F_PERMANENT),
        build.address(2, "fe80::2/64", flags=IFA_F_PERMANENT),
        build.address(2, "2001:db8::1/64", flags=IFA_F_PERMANENT),
        build.address(2, "10.0.0.1/24"),
        build.address(3, "2001:db8:1::1/64", flags=IFA_F_TENTATIVE | IFA_F_PERMANENT),
    )
    interfaces = {i.ifname: i for i in state.fib().interfaces}
    assert "lo" not in interfaces  # ::1 is no router-id
    assert interfaces["eth0"].addresses == ("10.0.0.1/24", "2001:db8::1/64", "fe80::2/64")
    assert interfaces["eth1"].addresses == ()  # still in DAD
    state.apply_datagram(build.address(3, "2001:db8:1::1/64", flags=IFA_F_PERMANENT))  # DAD done
    state.apply_datagram(build.address(1, "2001:db8:ff::1/128", flags=IFA_F_PERMANENT))
    assert not state.routes_stale
    assert state.take_delta() == FibDelta(interfaces_set=(
        Interface("eth1", ETH1[2], True, ("2001:db8:1::1/64",)),
        Interface("lo", LO[2], True, ("2001:db8:ff::1/128",)),
    ))  # fmt: skip
    state.apply_datagram(build.address(3, "2001:db8:1::1/64", flags=IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_PERMANENT))
    assert state.take_delta() == FibDelta(interfaces_set=(Interface("eth1", ETH1[2], True, ()),))


@pytest.mark.parametrize("text, canonical", [
    ("2001:DB8::1/64", "2001:db8::1/64"),
    ("::ffff:10.0.0.1/128", "::ffff:a00:1/128"),  # what inet_ntop writes, as ipaddress writes it
])  # fmt: skip
def test_addresses_are_canonical(build: Any, text: str, canonical: str) -> None:
    state = _state(build, build.address(2, text, event=RTM_NEWADDR))
    assert msgspec.structs.asdict(state.fib().interfaces[0])["addresses"] == (canonical,)
