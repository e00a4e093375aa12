import struct

import msgspec
import pytest

from routeflow.model import (
    CONTROLLER,
    Fib,
    Flow,
    FlowKey,
    Group,
    Interface,
    Neighbour,
    NextHop,
    PortDesc,
    Route,
    match,
    output,
)
from routeflow.protocol import codec, mapping
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    DatapathJoin,
    DiscoveryPlan,
    FibAudit,
    FibDelta,
    FibSnapshot,
    Hello,
    StatusRequest,
    TableMod,
    Welcome,
    delta_parts,
)

FLOW = Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (("dec_nw_ttl",), output(2)))


@pytest.mark.parametrize("msg", [
    Hello(PROTOCOL_VERSION, "client", "rA", "00" * 16),
    Welcome(PROTOCOL_VERSION, (0x7266,)),
    DatapathJoin(1, (PortDesc(1, "s1-eth1", "aa:bb:cc:dd:ee:ff", True),)),
    TableMod(1, add=(FLOW,), delete=(FlowKey(1, 0, ()),), group_add=(Group(3, "select", ((output(1),), (CONTROLLER,))),)),
    FibSnapshot(Fib(
        (Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",)),),
        (Route("10.0.0.0/24", (NextHop("eth1", "172.31.1.9"),), proto="ospf"),),
        (Neighbour("eth1", "172.31.1.9", "02:00:00:00:00:09"),),
    )),
    FibDelta(routes_del=("10.0.0.0/24",), neighbours_del=(("eth1", "172.31.1.9"),)),
    FibAudit(audits=7, repaired=2, last_repair="2026-12-03T15:00:00Z", seconds=0.012),
])
def test_round_trip(msg):
    conn = codec.Connection()
    assert conn.receive_data(codec.encode(msg)) == [msg]


def test_frames_split_and_joined_at_any_byte():
    msgs = [StatusRequest(i) for i in range(5)]
    data = b"".join(codec.encode(m) for m in msgs)
    conn = codec.Connection()
    got = []
    for i in range(len(data)):
        got += conn.receive_data(data[i : i + 1])
    assert got == msgs and conn.buffered == 0


def test_oversized_frame_is_a_remote_error_before_buffering_it():
    conn = codec.Connection(max_frame=100)
    with pytest.raises(codec.RemoteProtocolError, match="exceeds"):
        conn.receive_data(struct.pack("!I", 101))


@pytest.mark.parametrize("body", [b"\xc1", b"\x81\xa4type\xa5bogus", b"\x81\xa4type\xa5hello"])
def test_garbage_is_a_remote_error(body):
    with pytest.raises(codec.RemoteProtocolError):
        codec.Connection().receive_data(struct.pack("!I", len(body)) + body)


def test_handshake_checks():
    with pytest.raises(codec.RemoteProtocolError, match="expected hello"):
        codec.check_hello(StatusRequest(1))
    with pytest.raises(codec.RemoteProtocolError, match="version"):
        codec.check_hello(Hello(99, "client", "rA", "00" * 16))
    with pytest.raises(codec.RemoteProtocolError, match="unexpected TableMod"):
        codec.check_accepted("client", TableMod(1))
    codec.check_accepted("controller", DatapathJoin(1, ()))


def test_mapping_packet_round_trip_and_rejections():
    frame = mapping.encode("rA", "eth1", "02:00:00:00:00:01")
    assert len(frame) >= 60 and frame[:6] == b"\xff" * 6
    assert mapping.decode(frame) == ("rA", "eth1")
    with pytest.raises(mapping.MappingPacketError):
        mapping.decode(frame[:12] + b"\x08\x00" + frame[14:])
    with pytest.raises(mapping.MappingPacketError):
        mapping.decode(frame[:20])


@pytest.mark.parametrize("routes", [0, 1, 3, 4, 7])
def test_snapshot_parts_carry_the_whole_fib_in_order(routes):
    from routeflow.protocol.messages import snapshot_parts
    from routeflow.server.peers import FibParts

    iface = Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",))
    neigh = Neighbour("eth1", "172.31.1.9", "02:00:00:00:00:09")
    fib = Fib((iface,), tuple(Route(f"10.0.{i}.0/24", (NextHop("eth1", "172.31.1.9"),)) for i in range(routes)),
              (neigh,))
    parts = list(snapshot_parts(fib, 7, limit=3))
    assert len(parts) == max(1, -(-routes // 3))
    assert [p.more for p in parts] == [True] * (len(parts) - 1) + [False]
    assert all(p.request_id == 7 and len(p.fib.routes) <= 3 for p in parts)
    # The server already holds the first route, and a different version of the second.
    known = {r.prefix: r for r in fib.routes[:1]}
    if routes > 1:
        known[fib.routes[1].prefix] = Route(fib.routes[1].prefix, (NextHop("eth1", "172.31.1.7"),))
    assembled = FibParts(known)
    for part in codec.Connection().receive_data(b"".join(map(codec.encode, parts))):
        assert isinstance(part, FibSnapshot)
        assembled.add(part.fib)
    result = assembled.fib()
    assert result == fib
    if routes:
        assert result.routes[0] is known[fib.routes[0].prefix]  # equal routes are the server's copy
    if routes > 2:  # decoded ones share one copy of each next-hop set
        assert result.routes[1].nexthops is result.routes[-1].nexthops


def test_a_discovery_plan_without_a_positive_interval_is_a_remote_error():
    good = codec.encode(DiscoveryPlan((1,), 0.25))
    assert codec.Connection().receive_data(good) == [DiscoveryPlan((1,), 0.25)]
    bad = good.replace(msgspec.msgpack.encode(0.25), msgspec.msgpack.encode(0.0))
    with pytest.raises(codec.RemoteProtocolError, match="interval"):
        codec.Connection().receive_data(bad)


@pytest.mark.parametrize("fields", [{"audits": -1, "repaired": 0}, {"audits": 1, "repaired": 0, "last_repair": "x" * 33}])
def test_fib_audit_values_are_checked_where_they_enter(fields):
    body = msgspec.msgpack.encode({"type": "fib_audit", **fields})
    with pytest.raises(codec.RemoteProtocolError):
        codec.Connection().receive_data(struct.pack("!I", len(body)) + body)


def test_a_large_delta_travels_in_parts_that_rebuild_it():
    routes = tuple(Route(f"10.{i >> 8}.{i & 255}.0/24", (NextHop("eth1", "172.31.1.9"),)) for i in range(25))
    gone = tuple(f"10.200.{i}.0/24" for i in range(7))
    delta = FibDelta(interfaces_set=(Interface("eth1", "02:00:00:00:00:01", True),), routes_set=routes,
                     routes_del=gone, neighbours_del=(("eth1", "172.31.1.9"),))
    pieces = list(delta_parts(delta, limit=10))
    assert len(pieces) == 5 and all(len(p.routes_set) + len(p.routes_del) + len(p.neighbours_del) <= 10 for p in pieces)
    assert pieces[0].interfaces_set == delta.interfaces_set and not any(p.interfaces_set for p in pieces[1:])
    assert sum((p.routes_set for p in pieces), ()) == routes and sum((p.routes_del for p in pieces), ()) == gone
    assert sum((p.neighbours_del for p in pieces), ()) == delta.neighbours_del
    assert list(delta_parts(delta)) == [delta]  # small enough: as it is
