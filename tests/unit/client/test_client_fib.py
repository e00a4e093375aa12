"""routeflow.client.fib: netlink messages to model values, against real captures and edge cases."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from pyroute2.netlink import NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_DELLINK, RTM_DELNEIGH, RTM_DELROUTE

from routeflow.client.fib import FibState
from routeflow.client.netlink import proto_name
from routeflow.model import Fib, Interface, Neighbour, NextHop, Route
from routeflow.protocol.messages import FibDelta
from tests.fibmirror import FibMirror

ETH0 = (2, "eth0", "02:00:00:00:00:02")
ETH1 = (3, "eth1", "02:00:00:00:00:03")


# -- golden captures ------------------------------------------------------------------


Golden = tuple[dict[str, Any], dict[str, Any]]


def test_dump_gives_the_captured_fib(golden: Golden) -> None:
    golden_dump, _ = golden
    state = FibState.load(list(golden_dump["datagrams"]))
    assert state.fib() == msgspec.convert(golden_dump["expected"], Fib)


def test_dump_keeps_only_what_forwards(golden_dump: dict[str, Any]) -> None:
    fib = FibState.load(list(golden_dump["datagrams"])).fib()
    prefixes = {route.prefix for route in fib.routes}
    assert "10.20.0.0/16" in prefixes and "0.0.0.0/0" in prefixes
    assert not {"10.60.0.0/16", "10.61.0.0/16"} & prefixes  # table 100, tos 0x10
    # IPv6 link-local and multicast routes are not forwarding state; 127/8 lives in the local table.
    assert not [p for p in prefixes if p.startswith(("fe80:", "ff", "127."))]
    assert "2001:db8::/32" in prefixes
    routes = {route.prefix: route for route in fib.routes}
    assert routes["10.20.0.0/16"].nexthops == (NextHop("eth1", "10.0.1.2"),)  # metric 100 beats 200
    assert routes["10.30.0.0/16"].nexthops == (NextHop("eth1", "10.0.1.2"), NextHop("eth2", "10.0.2.2"))
    assert routes["10.30.0.0/16"].proto == "ospf"
    assert routes["10.40.0.0/16"] == Route("10.40.0.0/16", (), "blackhole", "boot")
    assert routes["10.70.0.0/16"].nexthops == (NextHop("eth1", "fe80::1"),)  # RTA_VIA
    ips = {n.ip for n in fib.neighbours}
    # INCOMPLETE, FAILED, NONE and a multicast NOARP entry are not next hops.
    assert ips == {"10.0.1.2", "10.0.1.254", "10.0.1.3", "10.0.1.4", "10.0.1.5", "10.0.2.2"}
    interfaces = {i.ifname: i for i in fib.interfaces}
    assert interfaces["lo"].addresses == ("10.255.0.1/32",)  # 127.0.0.1/8 and ::1/128 hidden
    assert interfaces["eth3"].up is False  # admin up, no carrier
    assert interfaces["eth1"].up is True


def test_event_steps_give_the_captured_deltas(golden: Golden) -> None:
    golden_dump, golden_events = golden
    state = FibState.load(list(golden_dump["datagrams"]))
    for step in golden_events["steps"]:
        for msg in step["datagrams"]:
            state.apply_datagram(msg)
        assert state.routes_stale == step["routes_stale"], step["title"]
        if state.routes_stale:
            state.resync(step["route_dump_datagrams"])
        expected = msgspec.convert(step["expected"], FibDelta) if step["expected"] else None
        assert state.take_delta() == expected, step["title"]
    assert state.fib() == msgspec.convert(golden_events["final"], Fib)


def test_deltas_applied_to_the_first_snapshot_give_the_final_state(golden: Golden) -> None:
    golden_dump, golden_events = golden
    state = FibState.load(list(golden_dump["datagrams"]))
    server = FibMirror(state.fib())
    for step in golden_events["steps"]:
        for msg in step["datagrams"]:
            state.apply_datagram(msg)
        if state.routes_stale:
            state.resync(step["route_dump_datagrams"])
        server.apply(state.take_delta())
    assert server.fib() == state.fib()


def test_replayed_events_change_nothing(golden: Golden) -> None:
    """Events already reflected in a dump arrive again after it: they must be no-ops."""
    golden_dump, golden_events = golden
    state = FibState.load(list(golden_dump["datagrams"]))
    for step in golden_events["steps"]:
        for msg in step["datagrams"]:
            state.apply_datagram(msg)
        if state.routes_stale:
            state.resync(step["route_dump_datagrams"])
        state.take_delta()
        if not step["routes_stale"]:
            for msg in step["datagrams"]:
                state.apply_datagram(msg)
            assert state.take_delta() is None, step["title"]


# -- routes ---------------------------------------------------------------------------


def _state(build: Any, *messages: Any) -> FibState:
    return FibState.load([build.link(*ETH0), build.link(*ETH1), *messages])


def _routes(state: FibState) -> dict[str, Route]:
    state.take_delta()
    return {route.prefix: route for route in state.fib().routes}


def test_lowest_metric_wins_and_deleting_it_falls_back(build: Any) -> None:
    state = _state(build, build.route("10.1.0.0/16", (2, "10.0.0.1"), metric=20))
    state.apply_datagram(build.route("10.1.0.0/16", (3, "10.0.1.1"), metric=10))
    assert state.take_delta() == FibDelta(
        routes_set=(Route("10.1.0.0/16", (NextHop("eth1", "10.0.1.1"),), proto="boot"),)
    )
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.9"), metric=30))
    assert state.take_delta() is None  # shadowed
    state.apply_datagram(build.route("10.1.0.0/16", (3, "10.0.1.1"), metric=10, event=RTM_DELROUTE))
    assert state.take_delta() == FibDelta(
        routes_set=(Route("10.1.0.0/16", (NextHop("eth0", "10.0.0.1"),), proto="boot"),)
    )
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.1"), metric=20, event=RTM_DELROUTE))
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.9"), metric=30, event=RTM_DELROUTE))
    assert state.take_delta() == FibDelta(routes_del=("10.1.0.0/16",))


def test_same_metric_prepend_append_and_replace(build: Any) -> None:
    first = build.route("10.1.0.0/16", (2, "10.0.0.1"), flags=NLM_F_CREATE | NLM_F_EXCL)
    state = _state(build, first)
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.2"), flags=NLM_F_CREATE | NLM_F_APPEND))
    assert state.take_delta() is None  # appended after the route in use
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.3"), flags=NLM_F_CREATE))
    assert _routes(state)["10.1.0.0/16"].nexthops == (NextHop("eth0", "10.0.0.3"),)  # prepended
    state.apply_datagram(build.route("10.1.0.0/16", (3, "10.0.1.4"), flags=NLM_F_CREATE | NLM_F_REPLACE))
    assert _routes(state)["10.1.0.0/16"].nexthops == (NextHop("eth1", "10.0.1.4"),)  # replaced .3
    state.apply_datagram(build.route("10.1.0.0/16", (3, "10.0.1.4"), event=RTM_DELROUTE))
    assert _routes(state)["10.1.0.0/16"].nexthops == (NextHop("eth0", "10.0.0.1"),)
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.1"), event=RTM_DELROUTE))
    assert _routes(state)["10.1.0.0/16"].nexthops == (NextHop("eth0", "10.0.0.2"),)


def test_deleting_an_unknown_route_changes_nothing(build: Any) -> None:
    state = _state(build, build.route("10.1.0.0/16", (2, "10.0.0.1")))
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.7"), event=RTM_DELROUTE))
    assert state.take_delta() is None


def test_multipath_drops_dead_legs_and_a_dead_route_falls_back(build: Any) -> None:
    state = _state(build, build.route("10.1.0.0/16", (2, "10.0.0.9"), metric=50))
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.1", 1), (3, "10.0.1.1", 16), metric=10))
    # A dead leg (RTNH_F_DEAD) is skipped; a linkdown one is still in the FIB.
    assert _routes(state)["10.1.0.0/16"].nexthops == (NextHop("eth1", "10.0.1.1"),)
    state.resync([
        build.route("10.1.0.0/16", (2, "10.0.0.1", 1), (3, "10.0.1.1", 1), metric=10),
        build.route("10.1.0.0/16", (2, "10.0.0.9"), metric=50),
    ])  # fmt: skip
    assert _routes(state)["10.1.0.0/16"].nexthops == (NextHop("eth0", "10.0.0.9"),)


def test_a_throw_route_in_front_hides_the_prefix(build: Any) -> None:
    state = _state(build, build.route("10.1.0.0/16", (2, "10.0.0.1"), metric=20))
    state.apply_datagram(build.route("10.1.0.0/16", type=9, metric=10))
    assert state.take_delta() == FibDelta(routes_del=("10.1.0.0/16",))


def test_ignored_routes(build: Any) -> None:
    state = _state(build)
    state.apply_datagram(build.route("10.1.0.0/16", (2, "10.0.0.1"), table=1000))
    state.apply_datagram(build.route("10.2.0.0/16", (2, "10.0.0.1"), tos=0x10))
    state.apply_datagram(build.route("10.3.0.0/16", (2, None), type=2))  # local
    assert state.take_delta() is None


def test_route_types_protocols_and_unknown_interfaces(build: Any) -> None:
    state = _state(
        build, build.route("0.0.0.0/0", (2, "10.0.0.1"), proto=186), build.route("10.9.0.0/16", (9, None))
    )
    state.apply_datagram(build.route("10.7.0.0/16", type=7, proto=250))
    routes = _routes(state)
    assert routes["0.0.0.0/0"] == Route("0.0.0.0/0", (NextHop("eth0", "10.0.0.1"),), "unicast", "bgp")
    assert routes["10.7.0.0/16"] == Route("10.7.0.0/16", (), "unreachable", "250")
    assert routes["10.9.0.0/16"].nexthops == (NextHop("if9"),)
    assert [proto_name(p) for p in (2, 4, 11, 12, 188, 196)] == [
        "kernel",
        "static",
        "zebra",
        "bird",
        "ospf",
        "static",
    ]


# -- neighbours and interfaces ----------------------------------------------------------


def test_neighbour_states_and_addresses(build: Any) -> None:
    state = _state(build)
    for n, (state_bits, mac) in enumerate(
        [(0x02, "02:00:00:00:00:AA"), (0x04, "02:00:00:00:00:ab"), (0x80, "02:00:00:00:00:ac"),
         (0x01, None), (0x20, "02:00:00:00:00:ad"), (0x00, "02:00:00:00:00:ae"),
         (0x40, "ff:ff:ff:ff:ff:ff"), (0x40, "01:00:5e:00:00:05"), (0x40, "00:00:00:00:00:00")]
    ):  # fmt: skip
        state.apply_datagram(build.neighbour(2, f"10.0.0.{n + 1}", mac, state_bits))
    state.apply_datagram(build.neighbour(2, "10.0.0.99", "02:00:00:00:00:99", 0x80, flags=0x08))  # proxy
    delta = state.take_delta()
    assert delta is not None
    assert delta.neighbours_set == (
        Neighbour("eth0", "10.0.0.1", "02:00:00:00:00:aa"),
        Neighbour("eth0", "10.0.0.2", "02:00:00:00:00:ab"),
        Neighbour("eth0", "10.0.0.3", "02:00:00:00:00:ac"),
    )
    state.apply_datagram(build.neighbour(2, "10.0.0.1", None, 0x20))  # failed
    state.apply_datagram(build.neighbour(2, "10.0.0.2", None, 0, event=RTM_DELNEIGH))
    assert state.take_delta() == FibDelta(neighbours_del=(("eth0", "10.0.0.1"), ("eth0", "10.0.0.2")))


def test_interfaces_addresses_and_loopback(build: Any) -> None:
    state = FibState.load([
        build.link(1, "lo", "00:00:00:00:00:00", flags=0x10049, operstate="UNKNOWN"),
        build.link(*ETH0, flags=0x1003, operstate="LOWERLAYERDOWN"),
        build.link(4, "dummy0", "02:00:00:00:00:04", flags=0x100c3, operstate="UNKNOWN"),
        build.address(1, "127.0.0.1/8"),
        build.address(2, "10.0.0.1/24"),
        build.address(4, "192.168.9.1/32", peer="192.168.9.2"),
    ])  # fmt: skip
    assert state.fib().interfaces == (
        Interface("dummy0", "02:00:00:00:00:04", True, ("192.168.9.1/32",)),
        Interface("eth0", "02:00:00:00:00:02", False, ("10.0.0.1/24",)),
    )
    assert state.nics() == {"eth0": "02:00:00:00:00:02", "dummy0": "02:00:00:00:00:04"}
    state.apply_datagram(build.address(1, "10.255.0.1/32"))
    state.apply_datagram(build.address(2, "10.0.0.1/24", event=RTM_DELADDR))
    state.apply_datagram(build.address(2, "9.0.0.1/8"))
    assert state.routes_stale  # the kernel flushes routes using a deleted address
    assert state.take_delta() == FibDelta(interfaces_set=(
        Interface("eth0", "02:00:00:00:00:02", False, ("9.0.0.1/8",)),
        Interface("lo", "00:00:00:00:00:00", True, ("10.255.0.1/32",)),
    ))  # fmt: skip


def test_link_down_carrier_loss_and_delete_mark_routes_stale(build: Any) -> None:
    state = _state(build, build.neighbour(3, "10.0.1.2", "02:00:00:00:01:02"))
    state.apply_datagram(build.link(*ETH0, flags=0x10043, operstate="UP"))  # no change: no dump
    assert not state.routes_stale
    # Carrier lost: classic routes stay (linkdown), but next-hop objects on the link are flushed silently.
    state.apply_datagram(build.link(*ETH0, flags=0x1003, operstate="LOWERLAYERDOWN"))
    assert state.routes_stale
    state.resync([])
    state.apply_datagram(build.link(*ETH0, flags=0x1002, operstate="DOWN"))
    assert state.routes_stale
    state.resync([])
    state.apply_datagram(build.link(*ETH1, event=RTM_DELLINK))
    assert state.routes_stale
    state.resync([])
    delta = state.take_delta()
    assert delta is not None
    assert delta.interfaces_del == ("eth1",)
    assert delta.neighbours_del == (("eth1", "10.0.1.2"),)


def test_rename_renames_next_hops_and_neighbours(build: Any) -> None:
    state = _state(
        build,
        build.route("10.1.0.0/16", (2, "10.0.0.1")),
        build.neighbour(2, "10.0.0.1", "02:00:00:00:01:01"),
    )
    state.apply_datagram(build.link(2, "wan0", ETH0[2]))
    delta = state.take_delta()
    assert delta == FibDelta(
        interfaces_set=(Interface("wan0", ETH0[2], True),),
        interfaces_del=("eth0",),
        routes_set=(Route("10.1.0.0/16", (NextHop("wan0", "10.0.0.1"),), proto="boot"),),
        neighbours_set=(Neighbour("wan0", "10.0.0.1", "02:00:00:00:01:01"),),
        neighbours_del=(("eth0", "10.0.0.1"),),
    )


def test_bridge_port_link_messages_are_ignored(build: Any) -> None:
    state = _state(build)
    state.apply_datagram(build.link(2, "eth0", ETH0[2], flags=0, family=7))  # AF_BRIDGE
    assert state.take_delta() is None


@pytest.mark.parametrize("mac", ["02:00:00:00:00:02", "02:00:00:00:00:02".upper()])
def test_macs_are_lowercase(build: Any, mac: str) -> None:
    state = FibState.load([build.link(2, "eth0", mac)])
    assert state.fib().interfaces[0].mac == "02:00:00:00:00:02"


def _patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


def test_malformed_messages_are_ignored_with_a_warning(build: Any, caplog: pytest.LogCaptureFixture) -> None:
    """What the fuzzers found: each is the decoder's Malformed, logged, and changes nothing."""
    state = _state(build, build.address(3, "10.0.1.1/24"))
    before = state.fib()
    malformed = [
        _patched(build.link(*ETH1), 32, b"\x01\x00"),  # IFLA_IFNAME of rta_len 1
        _patched(build.address(3, "10.0.2.1/24"), 32, b"\x03\x00"),  # IFA_LOCAL of rta_len 3
        bytes.fromhex("10000000100002000100000000000000"),  # an RTM_NEWLINK with no ifinfomsg
        _patched(build.address(3, "10.0.2.1/24"), 17, b"\x28"),  # 10.0.2.1/40
    ]
    for data in malformed:
        state.apply_datagram(data)
    assert state.take_delta() is None and state.fib() == before
    warnings = [r.getMessage() for r in caplog.records if r.name == "routeflow.client"]
    assert warnings == [
        "rtnetlink message of type 16 ignored: attribute 3 at byte 32: length 1, 32 bytes left",
        "rtnetlink message of type 20 ignored: attribute 2 at byte 32: length 3, 16 bytes left",
        "rtnetlink message of type 16 ignored: 16 bytes, too short for a message of type 16",
        "rtnetlink message of type 20 ignored: prefix length 40 of 10.0.2.1",
    ]
