"""routeflow.client.fib with kernel next-hop objects: routes follow their objects, and
go with them, as in the kernel (which announces neither)."""

from __future__ import annotations

from typing import Any

from routeflow.client.fib import FibState
from routeflow.model import NextHop, Route
from routeflow.protocol.messages import FibDelta
from tests.fibmirror import FibMirror

NEW, DEL = 104, 105
RTM_DELROUTE = 25
ETH1 = (3, "eth1", "02:00:00:00:00:03")
ETH2 = (4, "eth2", "02:00:00:00:00:04")
P4, P6 = "198.18.0.0/24", "2001:db8:99::/48"


def _state(build: Any, *messages: bytes) -> FibState:
    return FibState.load([build.link(*ETH1), build.link(*ETH2), *messages])


def _routes(state: FibState) -> dict[str, Route]:
    """The routes reported once pending changes are taken."""
    state.take_delta()
    return {route.prefix: route for route in state.fib().routes}


def test_route_follows_its_object_and_goes_with_it(build: Any) -> None:
    state = _state(build, build.nexthop(1, 3, "10.0.1.2"),
                   build.route(P4, (3, "10.0.1.2"), nhid=1, proto=188))  # fmt: skip
    assert _routes(state)[P4] == Route(P4, (NextHop("eth1", "10.0.1.2"),), "unicast", "ospf")
    # `ip nexthop replace id 1 via 10.0.2.2 dev eth2`: every route through it moves.
    state.apply_datagram(build.nexthop(1, 4, "10.0.2.2"))
    assert state.take_delta() == FibDelta(routes_set=(Route(P4, (NextHop("eth2", "10.0.2.2"),), "unicast", "ospf"),))
    # `ip nexthop del id 1`: the kernel removes the route without an RTM_DELROUTE.
    state.apply_datagram(build.nexthop(1, 4, "10.0.2.2", event=DEL))
    assert state.take_delta() == FibDelta(routes_del=(P4,))
    assert P4 not in _routes(state)


def test_the_object_not_the_message_says_where_a_route_goes(build: Any) -> None:
    # A route message spells out its object's next hops as they were; the object now is what counts.
    state = _state(build, build.nexthop(1, 4, "10.0.2.2"), build.route(P4, (3, "10.0.1.2"), nhid=1))
    assert _routes(state)[P4].nexthops == (NextHop("eth2", "10.0.2.2"),)
    # Deleting the route names the object, whatever hops the message shows.
    state.apply_datagram(build.route(P4, (3, "10.9.9.9"), nhid=1, event=RTM_DELROUTE))
    assert P4 not in _routes(state)


def test_group_members_change_and_the_last_one_takes_the_group(build: Any) -> None:
    state = _state(
        build,
        build.nexthop(1, 3, "10.0.1.2"), build.nexthop(2, 4, "10.0.2.2"), build.nexthop(10, group=((1, 1), (2, 1))),
        build.route(P4, (3, "10.0.1.2"), (4, "10.0.2.2"), nhid=10, proto=186),
    )  # fmt: skip
    both = (NextHop("eth1", "10.0.1.2"), NextHop("eth2", "10.0.2.2"))
    assert _routes(state)[P4] == Route(P4, both, "unicast", "bgp")
    # A member deleted: the kernel shrinks the group (announced) but not the routes (not announced).
    state.apply_datagram(build.nexthop(2, 4, "10.0.2.2", event=DEL))
    assert state.take_delta() == FibDelta(routes_set=(Route(P4, both[:1], "unicast", "bgp"),))
    state.apply_datagram(build.nexthop(10, group=((1, 1),)))  # the kernel's own notice of it: no change
    assert state.take_delta() is None
    # Back, and the group replaced with it: ECMP again.
    state.apply_datagram(build.nexthop(2, 4, "10.0.2.2"))
    state.apply_datagram(build.nexthop(10, group=((1, 1), (2, 1))))
    assert _routes(state)[P4].nexthops == both
    # The last member goes: the group goes, and the route with it.
    state.apply_datagram(build.nexthop(2, 4, "10.0.2.2", event=DEL))
    state.apply_datagram(build.nexthop(1, 3, "10.0.1.2", event=DEL))
    assert state.take_delta() == FibDelta(routes_del=(P4,))
    assert state.fib().routes == ()


def test_dead_members_and_blackhole_objects(build: Any) -> None:
    state = _state(
        build,
        build.nexthop(1, 3, "10.0.1.2", flags=1), build.nexthop(2, 4, "10.0.2.2"),
        build.nexthop(10, group=((1, 1), (2, 3))), build.nexthop(20, blackhole=True),
        build.route(P4, nhid=10), build.route("198.18.1.0/24", nhid=20, proto=186),
    )  # fmt: skip
    routes = _routes(state)
    assert routes[P4].nexthops == (NextHop("eth2", "10.0.2.2"),)  # the dead member is skipped
    assert routes["198.18.1.0/24"] == Route("198.18.1.0/24", (), "blackhole", "bgp")


def test_ipv6_routes_through_objects(build: Any) -> None:
    state = _state(
        build,
        build.nexthop(6, 3, "fe80::2"), build.nexthop(7, 4, "2001:db8:2::2"), build.nexthop(67, group=((6, 1), (7, 1))),
        build.route(P6, (3, "fe80::2"), (4, "2001:db8:2::2"), nhid=67, metric=1024, proto=188),
        build.route("2001:db8:98::/48", (3, "fe80::2"), nhid=6, metric=1024),
    )  # fmt: skip
    routes = _routes(state)
    # One route through its group, not two legs.
    assert routes[P6].nexthops == (NextHop("eth1", "fe80::2"), NextHop("eth2", "2001:db8:2::2"))
    assert routes["2001:db8:98::/48"].nexthops == (NextHop("eth1", "fe80::2"),)
    state.apply_datagram(build.nexthop(7, 4, "2001:db8:2::2", event=DEL))
    state.apply_datagram(build.nexthop(6, 3, "fe80::2", event=DEL))
    assert state.take_delta() == FibDelta(routes_del=("2001:db8:98::/48", P6))
    # The kernel's own RTM_DELROUTEs for IPv6 come after: nothing left to remove.
    state.apply_datagram(build.route(P6, (3, "fe80::2"), nhid=67, metric=1024, event=RTM_DELROUTE))
    assert state.take_delta() is None


def test_unknown_object_falls_back_to_the_hops_the_message_spelled_out(build: Any) -> None:
    state = _state(build, build.route(P4, (3, "10.0.1.2"), nhid=5))
    assert _routes(state)[P4].nexthops == (NextHop("eth1", "10.0.1.2"),)
    state.apply_datagram(build.nexthop(5, 4, "10.0.2.2"))  # its object arrives (an event after the dump)
    assert state.take_delta() == FibDelta(routes_set=(Route(P4, (NextHop("eth2", "10.0.2.2"),), "unicast", "boot"),))


def test_resync_replaces_objects_and_routes(build: Any) -> None:
    state = _state(build, build.nexthop(1, 3, "10.0.1.2"), build.route(P4, nhid=1),
                   build.route("198.18.1.0/24", (3, "10.0.1.2")))  # fmt: skip
    mirror = FibMirror(state.fib())
    # The link lost its carrier: the kernel flushed object 1 (and its route) without a word.
    state.resync([build.nexthop(2, 4, "10.0.2.2"), build.route("198.18.1.0/24", (3, "10.0.1.2")),
                  build.route("198.18.2.0/24", nhid=2)])  # fmt: skip
    delta = state.take_delta()
    assert delta is not None and delta.routes_del == (P4,)
    assert [r.prefix for r in delta.routes_set] == ["198.18.2.0/24"]
    mirror.apply(delta)
    assert mirror.fib() == state.fib()
    # Its users are known again: deleting object 2 takes its route.
    state.apply_datagram(build.nexthop(2, 4, "10.0.2.2", event=DEL))
    assert state.take_delta() == FibDelta(routes_del=("198.18.2.0/24",))


def test_events_replayed_over_a_dump_end_where_the_kernel_is(build: Any) -> None:
    # The dump already shows object 1 recreated and a route through it; the events
    # of the meantime (delete, add, route add) replay on top and change nothing in the end.
    dumped = _state(build, build.nexthop(1, 4, "10.0.2.2"), build.route(P4, nhid=1))
    before = dumped.fib()
    for event in (build.nexthop(1, 3, "10.0.1.2", event=DEL), build.nexthop(1, 4, "10.0.2.2"),
                  build.route(P4, nhid=1)):  # fmt: skip
        dumped.apply_datagram(event)
    dumped.take_delta()
    assert dumped.fib() == before
