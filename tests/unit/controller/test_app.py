"""The os-ken application driven by constructed OpenFlow events and fake datapaths."""

from __future__ import annotations

import struct
import threading
import typing

import pytest
from os_ken.controller import ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, get_dependent_services, register_instance
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller import app as appmod
from routeflow.controller.app import RouteFlowController
from routeflow.controller.app_tables import SEND_CHUNK
from routeflow.controller.openflow import fast_decode, reference
from routeflow.controller.settings import ControllerSettings
from routeflow.controller.switch import error_text
from routeflow.harness import wait_for
from routeflow.model import CONTROLLER, Flow, Group, PortDesc, match, output
from routeflow.protocol import lldp, mapping
from routeflow.protocol.codec import RemoteProtocolError
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    ControllerStats,
    DatapathJoin,
    DatapathLeave,
    DiscoveryPlan,
    DumpTable,
    Goodbye,
    Hello,
    LinkChange,
    MappingSeen,
    PortChange,
    RelayEntry,
    RelayMap,
    StatsRequest,
    SwitchError,
    TableDump,
    TableMod,
    ToController,
    Welcome,
)

from .switches import MAC, FakeDatapath, ofport
from .wire import deadline

S1, RFVS = 0x1, 0x7266


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, msg) -> bool:
        self.sent.append(msg)
        return True

    def stop(self) -> None:
        pass

    def take(self) -> list[object]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def app():
    controller = RouteFlowController(settings=ControllerSettings("unix:/nonexistent", "test"))
    controller.link = FakeLink()
    # Active, as a server that holds no elections says (term 0: no OpenFlow roles asked for).
    controller.roles.assign(True, 0)
    yield controller
    with controller._lock:  # its clock thread, if a test started it
        controller._stopping = True
        controller._wake.notify()


def state_change(app, dp, state):
    ev = ofp_event.EventOFPStateChange(dp)
    ev.state = state
    app._state_change(ev)


def port_desc_reply(app, dp, ports, more=False):
    (_, xid, _), = [m for m in dp.of_type(ofp.OFPT_MULTIPART_REQUEST)][-1:]
    reply = parser.OFPPortDescStatsReply(dp, body=ports, flags=ofp.OFPMPF_REPLY_MORE if more else 0)
    reply.xid = xid
    app._port_desc_reply(ofp_event.EventOFPPortDescStatsReply(reply))


def join(app, dpid, ports=None) -> FakeDatapath:
    dp = FakeDatapath(dpid)
    state_change(app, dp, MAIN_DISPATCHER)
    port_desc_reply(app, dp, ports or [ofport(1), ofport(2)])
    return dp


def connect(app, dpid, host: str) -> FakeDatapath:
    """A connection through os-ken's handshake, claiming ``dpid``, from ``host``."""
    dp = FakeDatapath(dpid)
    dp.address = (host, 50000)
    state_change(app, dp, MAIN_DISPATCHER)
    return dp


def packet_in(app, dp, in_port, data, reason=ofp.OFPR_NO_MATCH):
    msg = parser.OFPPacketIn(dp, ofp.OFP_NO_BUFFER, len(data), reason, 0, 0,
                             parser.OFPMatch(in_port=in_port), data)
    app._packet_in(ofp_event.EventOFPPacketIn(msg))


def packet_outs(dp) -> list[tuple[int, int, bytes]]:
    """(in_port, output port, data) of every packet-out sent to ``dp``."""
    outs = []
    for _, _, raw in dp.of_type(ofp.OFPT_PACKET_OUT):
        buffer_id, in_port, actions_len = struct.unpack_from("!IIH", raw, 8)
        assert buffer_id == ofp.OFP_NO_BUFFER
        (port,) = struct.unpack_from("!I", raw, 24 + 4)
        outs.append((in_port, port, raw[24 + actions_len:]))
    return outs


# -- datapaths -------------------------------------------------------------------------


def test_a_new_datapath_is_asked_for_whole_packets_and_ttl_expiry(app):
    dp = FakeDatapath(S1)
    state_change(app, dp, MAIN_DISPATCHER)
    assert [kind for kind, _, _ in dp.messages()] == [ofp.OFPT_SET_CONFIG, ofp.OFPT_SET_ASYNC,
                                                     ofp.OFPT_MULTIPART_REQUEST]
    (_, _, raw), = dp.of_type(ofp.OFPT_SET_CONFIG)
    assert struct.unpack_from("!HH", raw, 8) == (ofp.OFPC_FRAG_NORMAL, ofp.OFPCML_NO_BUFFER)
    (_, _, raw), = dp.of_type(ofp.OFPT_SET_ASYNC)
    packet_in_master, _, port_status_master, _ = struct.unpack_from("!IIII", raw, 8)
    assert packet_in_master & (1 << ofp.OFPR_INVALID_TTL) and packet_in_master & (1 << ofp.OFPR_NO_MATCH)
    assert port_status_master == 0b111


def test_join_reports_ports_after_the_last_reply_part(app):
    dp = FakeDatapath(S1)
    state_change(app, dp, MAIN_DISPATCHER)
    assert app.link.take() == []
    port_desc_reply(app, dp, [ofport(2, "s1-eth2", state=ofp.OFPPS_LINK_DOWN)], more=True)
    assert app.link.take() == []
    port_desc_reply(app, dp, [ofport(ofp.OFPP_LOCAL, "s1"), ofport(1, "s1-eth1")])
    expected = (PortDesc(1, "s1-eth1", MAC, True), PortDesc(2, "s1-eth2", MAC, False))
    assert app.link.take() == [DatapathJoin(S1, expected)]


def test_port_status_after_join_and_leave(app):
    dp = FakeDatapath(S1)
    state_change(app, dp, MAIN_DISPATCHER)
    status = parser.OFPPortStatus(dp, ofp.OFPPR_MODIFY, ofport(1, config=ofp.OFPPC_PORT_DOWN))
    app._port_status(ofp_event.EventOFPPortStatus(status))
    assert app.link.take() == [], "before the join, the port description reply covers it"
    port_desc_reply(app, dp, [ofport(1), ofport(2)])
    app.link.take()

    app._port_status(ofp_event.EventOFPPortStatus(status))
    gone = parser.OFPPortStatus(dp, ofp.OFPPR_DELETE, ofport(2))
    app._port_status(ofp_event.EventOFPPortStatus(gone))
    local = parser.OFPPortStatus(dp, ofp.OFPPR_MODIFY, ofport(ofp.OFPP_LOCAL))
    app._port_status(ofp_event.EventOFPPortStatus(local))
    assert app.link.take() == [
        PortChange(S1, PortDesc(1, "p1", MAC, False)),
        PortChange(S1, PortDesc(2, "p2", MAC, True), deleted=True),
    ]
    state_change(app, dp, DEAD_DISPATCHER)
    assert app.link.take() == [DatapathLeave(S1)]


def test_stale_connection_death_does_not_remove_the_new_one(app, monkeypatch):
    monkeypatch.setattr(appmod, "ECHO_TIMEOUT", 0.05)
    old = join(app, S1)
    new = connect(app, S1, "127.0.0.2")
    wait_for(lambda: new.of_type(ofp.OFPT_MULTIPART_REQUEST), 5, 0.01)  # the old one did not answer: replaced
    port_desc_reply(app, new, [ofport(1), ofport(2)])
    app.link.take()
    state_change(app, old, DEAD_DISPATCHER)
    assert app.link.take() == []
    app.apply_table_mod(TableMod(S1, add=(Flow(0, 1, ()),)))
    assert new.of_type(ofp.OFPT_FLOW_MOD) and not old.of_type(ofp.OFPT_FLOW_MOD)


def test_reconnect_re_reports_every_datapath(app):
    join(app, S1)
    join(app, RFVS, [ofport(5)])
    app.link.take()
    app._on_server_connect(Welcome(PROTOCOL_VERSION, (RFVS,)))
    assert sorted(m.dpid for m in app.link.take()) == [S1, RFVS]
    assert app.slow_path.rfvs == {RFVS}


# -- server messages ----------------------------------------------------------------------


def test_unexpected_server_messages_end_the_session(app):
    with pytest.raises(RemoteProtocolError):
        app._on_server_message(Hello(PROTOCOL_VERSION, "client", "x", "00" * 16))
    with pytest.raises(ConnectionError):
        app._on_server_message(Goodbye("bye"))


def test_every_message_the_server_sends_the_controller_has_a_handler(app):
    assert set(app.server_handlers) == set(typing.get_args(ToController))


def test_table_mod_applied_in_order_with_barrier(app):
    dp = join(app, S1)
    grp = Group(9, "select", ((output(1),), (output(2),)))
    flow = Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (("group", 9),))
    app._on_server_message(TableMod(S1, add=(flow,), delete=(Flow(1, 0, ()).key,), group_add=(grp,),
                                    group_delete=(3,)))
    setup = (ofp.OFPT_SET_CONFIG, ofp.OFPT_SET_ASYNC, ofp.OFPT_MULTIPART_REQUEST)
    kinds = [m[0] for m in dp.messages() if m[0] not in setup]
    assert kinds == [ofp.OFPT_GROUP_MOD, ofp.OFPT_BARRIER_REQUEST, ofp.OFPT_FLOW_MOD, ofp.OFPT_FLOW_MOD,
                     ofp.OFPT_BARRIER_REQUEST, ofp.OFPT_GROUP_MOD, ofp.OFPT_BARRIER_REQUEST]
    xids = [m[1] for m in dp.messages()]
    assert len(set(xids)) == len(xids)
    first = dp.of_type(ofp.OFPT_FLOW_MOD)[0]
    parsed = ofproto_parser.msg(dp, ofp.OFP_VERSION, first[0], len(first[2]), first[1], first[2])
    assert parsed.cookie == reference.ROUTEFLOW_COOKIE and parsed.command == ofp.OFPFC_ADD


def test_large_table_mod_is_sent_in_few_large_writes(app):
    dp = join(app, S1)
    dp.writes.clear()
    flows = tuple(Flow(1, 1032, match(eth_type=0x800, ipv4_dst=f"10.{i >> 8}.{i & 255}.1"), (CONTROLLER,))
                  for i in range(5000))
    app.apply_table_mod(TableMod(S1, add=flows))
    assert len(dp.of_type(ofp.OFPT_FLOW_MOD)) == 5000
    total = sum(map(len, dp.writes))
    assert len(dp.writes) <= total // SEND_CHUNK + 1
    assert all(len(w) < SEND_CHUNK + 1024 for w in dp.writes)


def test_table_mod_errors_are_reported(app):
    app.apply_table_mod(TableMod(42, add=(Flow(0, 1, ()),)))
    assert app.link.take() == [SwitchError(42, "datapath not connected")]
    dp = join(app, S1)
    app.link.take()
    app.apply_table_mod(TableMod(S1, add=(Flow(0, 1, (), (("teleport",),)), Flow(0, 2, ()))))
    (error,) = app.link.take()
    assert isinstance(error, SwitchError) and "teleport" in error.text
    assert len(dp.of_type(ofp.OFPT_FLOW_MOD)) == 1


def test_switch_errors_are_reported(app):
    dp = join(app, S1)
    app.link.take()
    failed = reference.flow_add(Flow(0, 1, ()), dp)
    failed.set_xid(77)
    failed.serialize()
    err = parser.OFPErrorMsg(dp, ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT, bytes(failed.buf[:64]))
    err.xid = 77
    app._error(ofp_event.EventOFPErrorMsg(err))
    (msg,) = app.link.take()
    assert msg.dpid == S1 and "OFPBAC_BAD_OUT_PORT" in msg.text and "OFPT_FLOW_MOD" in msg.text


def dump_requests(dp):
    """xids of the flow-stats and group-desc requests, in that order."""
    xids = {}
    for _, xid, raw in dp.of_type(ofp.OFPT_MULTIPART_REQUEST):
        (kind,) = struct.unpack_from("!H", raw, 8)
        xids[kind] = xid
    return xids[ofp.OFPMP_FLOW], xids[ofp.OFPMP_GROUP_DESC]


def test_dump_table_collects_every_reply_part(app):
    dp = join(app, S1)
    app.link.take()
    app._on_server_message(DumpTable(7, S1))
    flow_xid, group_xid = dump_requests(dp)
    flows = [Flow(0, 5, match(eth_type=0x806), (CONTROLLER,)), Flow(1, 0, ())]
    grp = Group(3, "select", ((output(1),), (output(2),)))

    def stats(flow):
        mod = reference.flow_add(flow, dp)
        return parser.OFPFlowStats(flow.table, 0, 0, flow.priority, 0, 0, 0, mod.cookie, 0, 0,
                                   mod.match, mod.instructions)

    def flow_reply(body, more):
        msg = parser.OFPFlowStatsReply(dp, body=body, flags=ofp.OFPMPF_REPLY_MORE if more else 0)
        msg.xid = flow_xid
        app._flow_stats_reply(ofp_event.EventOFPFlowStatsReply(msg))

    flow_reply([stats(flows[0])], True)
    flow_reply([stats(flows[1])], False)
    assert app.link.take() == []
    desc = parser.OFPGroupDescStats(ofp.OFPGT_SELECT, 3, reference.group_add(grp).buckets)
    msg = parser.OFPGroupDescStatsReply(dp, body=[desc], flags=0)
    msg.xid = group_xid
    app._group_desc_reply(ofp_event.EventOFPGroupDescStatsReply(msg))
    assert app.link.take() == [TableDump(7, S1, tuple(flows), (grp,))]
    assert not app.dumps


def test_large_dump_goes_to_the_server_in_parts(app, monkeypatch):
    monkeypatch.setattr(app.dumps, "part", 2)
    dp = join(app, S1)
    app.link.take()
    app._on_server_message(DumpTable(9, S1))
    flow_xid, group_xid = dump_requests(dp)
    flows = [Flow(1, 1000 + i, match(eth_type=0x800, ipv4_dst=f"10.0.{i}.0/24"), (output(1),)) for i in range(5)]
    body = []
    for flow in flows:
        mod = reference.flow_add(flow, dp)
        body.append(parser.OFPFlowStats(flow.table, 0, 0, flow.priority, 0, 0, 0, mod.cookie, 0, 0,
                                        mod.match, mod.instructions))
    msg = parser.OFPFlowStatsReply(dp, body=body, flags=0)
    msg.xid = flow_xid
    app._flow_stats_reply(ofp_event.EventOFPFlowStatsReply(msg))
    parts = app.link.take()  # whole parts leave before the dump is complete
    assert [(len(p.flows), p.more) for p in parts] == [(2, True), (2, True)]
    msg = parser.OFPGroupDescStatsReply(dp, body=[], flags=0)
    msg.xid = group_xid
    app._group_desc_reply(ofp_event.EventOFPGroupDescStatsReply(msg))
    parts += app.link.take()
    assert [(len(p.flows), p.more) for p in parts] == [(2, True), (2, True), (1, False)]
    assert sum((p.flows for p in parts), ()) == tuple(flows)


def test_dump_table_errors(app, monkeypatch):
    app.dump_table(DumpTable(1, 99))
    assert app.link.take() == [TableDump(1, 99, (), (), "datapath not connected")]

    dp = join(app, S1)
    app.link.take()
    app.dump_table(DumpTable(2, S1))
    flow_xid, _ = dump_requests(dp)
    err = parser.OFPErrorMsg(dp, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART, b"")
    err.xid = flow_xid
    app._error(ofp_event.EventOFPErrorMsg(err))
    (reply,) = app.link.take()
    assert reply.request_id == 2 and "OFPBRC_BAD_MULTIPART" in reply.error

    app.dump_table(DumpTable(3, S1))
    state_change(app, dp, DEAD_DISPATCHER)
    assert app.link.take() == [DatapathLeave(S1), TableDump(3, S1, (), (), "datapath disconnected")]

    monkeypatch.setattr(app.dumps, "timeout", 0.05)
    app._clock.start()  # the app's one timer
    join(app, S1)
    app.link.take()
    app.dump_table(DumpTable(4, S1))
    wait_for(lambda: app.link.sent, 5, 0.01)
    assert app.link.take() == [TableDump(4, S1, (), (), "timed out")]


def raw_reply(dp, kind: int, xid: int, entries: list[bytes], more: bool = False):
    """A multipart reply as os-ken hands it over off the wire (raw bytes in ``msg.buf``)."""
    body = b"".join(entries)
    buf = struct.pack("!BBHIHH4x", ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, 16 + len(body), xid, kind,
                      ofp.OFPMPF_REPLY_MORE if more else 0) + body
    return ofproto_parser.msg(dp, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(buf), xid, buf)


def test_dump_table_decodes_raw_replies(app):
    """Replies off the wire are decoded from their bytes, never parsed by os-ken."""
    dp = join(app, S1)
    app.link.take()
    app._on_server_message(DumpTable(8, S1))
    flow_xid, group_xid = dump_requests(dp)
    flows = [Flow(0, 5, match(eth_type=0x806), (CONTROLLER,)),
             Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (("group", 3),)), Flow(1, 0, ())]
    grp = Group(3, "select", ((output(1),), (output(2),)))

    def entry(flow):
        mod = reference.flow_add(flow, dp)
        mod.set_xid(0)
        mod.serialize()
        rest = bytes(mod.buf[48:])
        return struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, 48 + len(rest), flow.table, 0, 0, flow.priority,
                           0, 0, 0, mod.cookie, 0, 0) + rest

    first = raw_reply(dp, ofp.OFPMP_FLOW, flow_xid, [entry(f) for f in flows[:2]], more=True)
    assert first.body._items is None
    app._flow_stats_reply(ofp_event.EventOFPFlowStatsReply(first))
    app._flow_stats_reply(ofp_event.EventOFPFlowStatsReply(
        raw_reply(dp, ofp.OFPMP_FLOW, flow_xid, [entry(flows[2])])))
    mod = reference.group_add(grp, dp)
    mod.set_xid(0)
    mod.serialize()
    buckets = bytes(mod.buf[16:])
    group_entry = struct.pack("!HBxI", 8 + len(buckets), ofp.OFPGT_SELECT, 3) + buckets
    groups = raw_reply(dp, ofp.OFPMP_GROUP_DESC, group_xid, [group_entry])
    app._group_desc_reply(ofp_event.EventOFPGroupDescStatsReply(groups))
    assert app.link.take() == [TableDump(8, S1, tuple(flows), (grp,))]
    assert first.body._items is None, "os-ken never parsed the body"


def test_unreadable_raw_reply_fails_the_dump(app):
    dp = join(app, S1)
    app.link.take()
    app._on_server_message(DumpTable(9, S1))
    flow_xid, _ = dump_requests(dp)
    msg = raw_reply(dp, ofp.OFPMP_FLOW, flow_xid, [b"\0\x10" + bytes(14)])  # entry shorter than its header
    app._flow_stats_reply(ofp_event.EventOFPFlowStatsReply(msg))
    (reply,) = app.link.take()
    assert reply.request_id == 9 and reply.error.startswith("unreadable reply")


# -- slow path ---------------------------------------------------------------------------


FRAME = bytes.fromhex("0a0000000001" "020000000001" "0800") + b"\x45" + b"\0" * 50


@pytest.fixture
def relay(app):
    switch = join(app, S1)
    rfvs = join(app, RFVS, [ofport(10), ofport(11)])
    app._on_server_connect(Welcome(PROTOCOL_VERSION, (RFVS,)))
    app._on_server_message(RelayMap((RelayEntry(S1, 1, RFVS, 10), RelayEntry(S1, 2, RFVS, 11))))
    app.link.take()
    return switch, rfvs


def test_relay_both_ways(app, relay):
    switch, rfvs = relay
    packet_in(app, switch, 2, FRAME)
    assert packet_outs(rfvs) == [(ofp.OFPP_CONTROLLER, 11, FRAME)]
    packet_in(app, rfvs, 10, FRAME)
    # A TTL-expired packet goes to the VM like any other, so it can answer time-exceeded.
    packet_in(app, switch, 1, FRAME, reason=ofp.OFPR_INVALID_TTL)
    assert packet_outs(switch) == [(ofp.OFPP_CONTROLLER, 1, FRAME)]
    assert packet_outs(rfvs)[-1] == (ofp.OFPP_CONTROLLER, 10, FRAME)
    app._on_server_message(StatsRequest(5))
    assert app.link.take() == [ControllerStats(5, {S1: 2, RFVS: 1}, {RFVS: 2, S1: 1},
                                               packet_in_by_kind={S1: {"ip": 2}, RFVS: {"ip": 1}})]


def test_unmapped_and_malformed_packets_are_dropped_and_counted(app, relay):
    switch, rfvs = relay
    packet_in(app, switch, 3, FRAME)  # no relay entry
    packet_in(app, rfvs, 10, b"\x01")  # too short to be anything
    packet_in(app, rfvs, 10, FRAME[:12] + b"\x0a\x0a" + b"RFMP\x09")  # mapping type, bad version
    broken = parser.OFPPacketIn(switch, ofp.OFP_NO_BUFFER, 0, 0, 0, 0, parser.OFPMatch(), None)
    app._packet_in(ofp_event.EventOFPPacketIn(broken))  # no in_port, no data
    truncated = parser.OFPPacketIn(switch, 7, 1500, 0, 0, 0, parser.OFPMatch(in_port=1), FRAME)
    app._packet_in(ofp_event.EventOFPPacketIn(truncated))  # switch buffered the rest
    assert app.slow_path.dropped == {S1: 3, RFVS: 1}
    assert packet_outs(switch)[-1:] == [(ofp.OFPP_CONTROLLER, 1, b"\x01")]
    assert app.link.take() == []


def test_new_relay_map_replaces_the_old(app, relay):
    switch, rfvs = relay
    app.set_relay_map(RelayMap((RelayEntry(S1, 3, RFVS, 11),)))
    packet_in(app, switch, 1, FRAME)
    packet_in(app, switch, 3, FRAME)
    assert packet_outs(rfvs) == [(ofp.OFPP_CONTROLLER, 11, FRAME)]


def test_mapping_packet_is_reported_not_relayed(app, relay):
    switch, rfvs = relay
    packet_in(app, rfvs, 11, mapping.encode("rA", "eth2", "02:00:00:00:00:02"))
    assert app.link.take() == [MappingSeen(RFVS, 11, "rA", "eth2")]
    assert packet_outs(switch) == []


def test_server_thread_and_event_thread_in_parallel(app, relay):
    """TableMods from the server thread while packet-ins relay: no lost counts, no exceptions."""
    switch, rfvs = relay
    errors = []

    def mods():
        try:
            for i in range(200):
                app.apply_table_mod(TableMod(S1, add=(Flow(0, i, ()),)))
                app.set_relay_map(RelayMap((RelayEntry(S1, 1, RFVS, 10), RelayEntry(S1, 2, RFVS, 11))))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=mods)
    thread.start()
    for _ in range(500):
        packet_in(app, switch, 1, FRAME)
    thread.join()
    assert errors == []
    assert app.slow_path.packet_in[S1] == 500 and app.slow_path.packet_out[RFVS] == 500


# -- discovery ---------------------------------------------------------------------------


def test_discovery_probes_finds_and_loses_links(app):
    s2 = 0x2
    dp1, dp2 = join(app, S1), join(app, s2, [ofport(1), ofport(2), ofport(3, state=ofp.OFPPS_LINK_DOWN)])
    join(app, 0x3)  # not in the plan: never probed
    app.link.take()
    app._on_server_message(DiscoveryPlan((S1, s2), interval=1.0))
    # One probe out of every port that is up, naming its datapath and port.
    assert sorted(lldp.parse_probe(d) + (p,) for _, p, d in packet_outs(dp1) + packet_outs(dp2)) == [
        (S1, 1, 1), (S1, 2, 2), (s2, 1, 1), (s2, 2, 2)]
    probe = next(d for _, p, d in packet_outs(dp1) if p == 2)
    sent = len(packet_outs(dp2))
    packet_in(app, dp2, 1, probe, reason=ofp.OFPR_ACTION)
    packet_in(app, dp2, 1, probe, reason=ofp.OFPR_ACTION)  # seen again: no news
    assert app.link.take() == [LinkChange(S1, 2, s2, 1, True)]
    assert len(packet_outs(dp2)) == sent, "probes are never relayed"
    # Foreign LLDP and garbage are dropped and counted, never reported.
    packet_in(app, dp2, 2, lldp.DESTINATION + bytes(6) + b"\x88\xcc\x02\x07\x04abcdef")
    assert app.link.take() == [] and app.slow_path.dropped[s2] == 1
    # The port going down loses the link at once.
    status = parser.OFPPortStatus(dp2, ofp.OFPPR_MODIFY, ofport(1, state=ofp.OFPPS_LINK_DOWN))
    app._port_status(ofp_event.EventOFPPortStatus(status))
    assert app.link.take()[1:] == [LinkChange(S1, 2, s2, 1, False)]
    # Back up: probed at once, and a restarted server hears of every link again.
    up = parser.OFPPortStatus(dp2, ofp.OFPPR_MODIFY, ofport(1))
    app._port_status(ofp_event.EventOFPPortStatus(up))
    assert lldp.parse_probe(packet_outs(dp2)[-1][2]) == (s2, 1)
    packet_in(app, dp2, 1, probe, reason=ofp.OFPR_ACTION)
    app.link.take()
    app._on_server_connect(Welcome(1, (RFVS,)))
    assert LinkChange(S1, 2, s2, 1, True) in app.link.take()
    state_change(app, dp1, DEAD_DISPATCHER)
    assert app.link.take() == [LinkChange(S1, 2, s2, 1, False), DatapathLeave(S1)]


def test_openflow_events_reach_their_handlers(app):
    # os-ken dispatches by decorator: a method slipped in under one steals its events. Registered
    # as os-ken's app manager registers an app (register_app -> register_instance), so that the
    # handlers the app inherits from its mixins (app_roles, app_tables) count as well.
    register_instance(app)
    handlers = {ev.__name__: [method.__name__ for method in methods] for ev, methods in app.event_handlers.items()}
    assert handlers == {
        "EventOFPStateChange": ["_state_change"], "EventOFPEchoReply": ["_echo_reply"],
        "EventOFPPortDescStatsReply": ["_port_desc_reply"], "EventOFPPortStatus": ["_port_status"],
        "EventOFPFlowStatsReply": ["_flow_stats_reply"], "EventOFPGroupDescStatsReply": ["_group_desc_reply"],
        "EventOFPErrorMsg": ["_error"], "EventOFPPacketIn": ["_packet_in"],
        "EventOFPRoleReply": ["_role_reply"], "EventOFPExperimenter": ["_experimenter"],
    }
    # The app manager loads the service that raises these events (ofp_handler) for the class's
    # handlers, inherited ones included.
    assert get_dependent_services(RouteFlowController) == ["os_ken.controller.ofp_handler"]


# -- what a switch sends: no handler raises, malformed input is dropped with its reason ----------------


#: A legal OFPT_ERROR of type OFPET_EXPERIMENTER: exp_type 1 of Nicira, no code, no data.
EXPERIMENTER_ERROR = bytes.fromhex("040100100000000bffff000100002320")
ZERO_BUCKET_REPLY = bytes.fromhex("041300280000000b0007000000000000001801000000000400000001ffffffffffffffff00000000")


def from_wire(dp, buf: bytes):
    """What os-ken's receive loop makes of ``buf`` (None: dropped), through the app's parser guards."""
    version, kind, length, xid = struct.unpack_from("!BBHI", buf)
    with deadline(2):
        return ofproto_parser.msg(dp, version, kind, length, xid, buf)


def error_message(kind: int, code: int, data: bytes = b"", xid: int = 11) -> bytes:
    return struct.pack("!BBHIHH", ofp.OFP_VERSION, ofp.OFPT_ERROR, 12 + len(data), xid, kind, code) + data


def test_experimenter_error_is_reported(app):
    dp = join(app, S1)
    app.link.take()
    msg = from_wire(dp, EXPERIMENTER_ERROR)
    assert error_text(msg) == "OFPET_EXPERIMENTER(65535) experimenter 0x00002320 type 1 (xid 11)"
    app._error(ofp_event.EventOFPErrorMsg(msg))
    assert app.link.take() == [SwitchError(S1, "OFPET_EXPERIMENTER(65535) experimenter 0x00002320 type 1 (xid 11)")]


def test_every_error_message_turns_into_text(app):
    dp = join(app, S1)
    failed = reference.flow_add(Flow(0, 1, ()), dp)
    failed.set_xid(11)
    failed.serialize()
    datas = [b"", b"\x04", bytes(failed.buf[:64]), b"\x04\xee\x00\x08\x00\x00\x00\x01", b"no hello\n\x00\xff" * 40]
    kinds = list(range(16)) + [0x1234, ofp.OFPET_EXPERIMENTER]
    for kind in kinds:
        for code in (0, 1, 7, 0xFFFF):
            for data in datas:
                msg = from_wire(dp, error_message(kind, code, data))
                if msg is None:  # too short for its experimenter id: dropped, and only that
                    assert kind == ofp.OFPET_EXPERIMENTER and len(data) < 4
                    continue
                text = error_text(msg)
                assert text.endswith("(xid 11)") and len(text) < 400
                app._error(ofp_event.EventOFPErrorMsg(msg))
    sent = app.link.take()
    assert len(sent) == (len(kinds) * len(datas) - 2) * 4 + 1 and all(isinstance(m, SwitchError) for m in sent[1:])
    hello = error_text(from_wire(dp, error_message(ofp.OFPET_HELLO_FAILED, 0, b"bad version\n")))
    assert hello == "OFPET_HELLO_FAILED(0) OFPHFC_INCOMPATIBLE(0): 'bad version\\n' (xid 11)"
    # os-ken's own objects may lack what the wire always has
    bare = parser.OFPErrorMsg(dp, ofp.OFPET_EXPERIMENTER, None, None)
    bare.xid = 3
    assert error_text(bare) == "OFPET_EXPERIMENTER(65535) experimenter ? type ? (xid 3)"


def test_unusable_messages_are_dropped_not_the_switch(app, caplog):
    """os-ken parses in the switch's receive loop: a malformed body must neither raise nor loop there."""
    dp = join(app, S1)
    # an in_port TLV whose value the message ends before: os-ken raises OFPTruncatedMessage, which ends the loop
    truncated_match = struct.pack("!BBHIIHBBQHHI", 4, ofp.OFPT_PACKET_IN, 32, 5, ofp.OFP_NO_BUFFER, 0, 0, 0, 0,
                                  ofp.OFPMT_OXM, 12, 0x8000_0004)
    zero_element_hello = struct.pack("!BBHIHHI", 4, ofp.OFPT_HELLO, 16, 1, 1, 0, 0x10)
    zero_group_stats = struct.pack("!BBHIHH4x", 4, ofp.OFPT_MULTIPART_REPLY, 56, 6, ofp.OFPMP_GROUP, 0) + bytes(40)
    v14_zero_instruction = (struct.pack("!BBHIHH4x", 5, ofp.OFPT_MULTIPART_REPLY, 80, 7, ofp.OFPMP_FLOW, 0)
                            + struct.pack("!H46xHH4x", 64, ofp.OFPMT_OXM, 4) + struct.pack("!HH4x", 4, 0))
    flow_mod = reference.flow_add(Flow(0, 1, (), (output(1),)), dp)
    flow_mod.set_xid(8)
    flow_mod.serialize()
    zero_instruction_flow_mod = bytes(flow_mod.buf[:58]) + b"\x00\x00" + bytes(flow_mod.buf[60:])  # after an empty match
    short_error = error_message(1, 2)[:10]
    short_error = short_error[:2] + b"\x00\x0a" + short_error[4:]
    bad = (truncated_match, zero_group_stats, v14_zero_instruction, zero_instruction_flow_mod, short_error)
    for buf in bad:
        assert from_wire(dp, buf) is None
    reasons = [r.getMessage().split("dropped: ")[1] for r in caplog.records if "dropped: " in r.getMessage()]
    assert len(reasons) == len(bad) and reasons[2] == "a version 5 message to a version 4 controller"
    hello = from_wire(dp, zero_element_hello)
    assert isinstance(hello, parser.OFPHello) and hello.elements == []  # read by its header alone
    assert from_wire(dp, bytes(flow_mod.buf)).instructions  # a well-formed one is still parsed


def test_malformed_table_dump_replies(app, monkeypatch):
    dp = join(app, S1)
    app.link.take()
    # nobody asked: not even decoded
    monkeypatch.setattr(fast_decode, "decode_group_desc", None)
    app._group_desc_reply(ofp_event.EventOFPGroupDescStatsReply(from_wire(dp, ZERO_BUCKET_REPLY)))
    assert app.link.take() == []
    monkeypatch.undo()
    app._on_server_message(DumpTable(12, S1))
    _, group_xid = dump_requests(dp)
    msg = from_wire(dp, ZERO_BUCKET_REPLY[:4] + struct.pack("!I", group_xid) + ZERO_BUCKET_REPLY[8:])
    with deadline(2):
        app._group_desc_reply(ofp_event.EventOFPGroupDescStatsReply(msg))
    assert app.link.take() == [TableDump(12, S1, (), (), "unreadable reply: bad bucket length 0 at 24")]


def test_oversized_and_odd_packet_ins_are_dropped(app, relay):
    switch, rfvs = relay
    big = FRAME + bytes(0xFFFF - 34 - len(FRAME))  # the largest a packet-in carries: no packet-out holds it
    packet_in(app, switch, 1, big)
    masked = parser.OFPPacketIn(switch, ofp.OFP_NO_BUFFER, len(FRAME), 0, 0, 0,
                                parser.OFPMatch(in_port=(1, 0xFF)), FRAME)
    app._packet_in(ofp_event.EventOFPPacketIn(masked))
    assert app.slow_path.dropped == {S1: 2} and packet_outs(rfvs) == []
    # a mapping packet naming no possible interface: the server would refuse (and drop) the whole link
    packet_in(app, rfvs, 11, mapping.encode("rA", "eth 2/x", "02:00:00:00:00:02"))
    packet_in(app, rfvs, 11, mapping.encode("rA", "a" * 16, "02:00:00:00:00:02"))
    assert app.slow_path.dropped[RFVS] == 2 and app.link.take() == []


def test_probe_from_an_impossible_port_is_dropped(app):
    join(app, S1)
    dp2 = join(app, 0x2)
    app.link.take()
    app._on_server_message(DiscoveryPlan((S1, 0x2), interval=1.0))
    for port in (1 << 70, ofp.OFPP_MAX, ofp.OFPP_LOCAL):
        packet_in(app, dp2, 1, lldp.build_probe(S1, port, MAC), reason=ofp.OFPR_ACTION)
    assert app.link.take() == [] and app.slow_path.dropped[0x2] == 3


def test_ports_are_bounded(app, monkeypatch):
    monkeypatch.setattr(app.ports, "limit", 3)
    dp = FakeDatapath(S1)
    state_change(app, dp, MAIN_DISPATCHER)
    port_desc_reply(app, dp, [ofport(1), ofport(2)], more=True)
    port_desc_reply(app, dp, [ofport(3), ofport(4), ofport(5)])
    (joined,) = app.link.take()
    assert [p.port_no for p in joined.ports] == [1, 2, 3]
    app._port_status(ofp_event.EventOFPPortStatus(parser.OFPPortStatus(dp, ofp.OFPPR_ADD, ofport(6))))
    app._port_status(ofp_event.EventOFPPortStatus(parser.OFPPortStatus(dp, 9, ofport(2))))  # unknown reason
    assert app.link.take() == []
    app._port_status(ofp_event.EventOFPPortStatus(parser.OFPPortStatus(dp, ofp.OFPPR_MODIFY, ofport(3))))
    assert len(app.link.take()) == 1


def test_only_the_datapaths_allowed_may_connect(caplog):
    controller = RouteFlowController(settings=ControllerSettings("unix:/nonexistent", "test", datapaths=frozenset({1})))
    controller.link = FakeLink()
    controller.roles.assign(True, 0)
    stranger = FakeDatapath(2)
    state_change(controller, stranger, MAIN_DISPATCHER)
    assert not stranger.alive and not stranger.writes  # closed before a word to it
    assert "refused datapath 0000000000000002" in caplog.text
    allowed = join(controller, 1)
    assert allowed.alive and [type(m).__name__ for m in controller.link.sent] == ["DatapathJoin"]


def test_over_tls_a_switch_certificate_speaks_for_its_own_datapath_only(caplog):
    controller = RouteFlowController(settings=ControllerSettings("unix:/nonexistent", "test"))
    controller.link = FakeLink()
    stolen = FakeDatapath(2, certificate="switch-0000000000000001")
    state_change(controller, stolen, MAIN_DISPATCHER)
    assert not stolen.alive and not stolen.writes
    assert "refused datapath 0000000000000002 from 127.0.0.1:40002: its certificate is 'switch-0000000000000001'" \
        in caplog.text
    for dpid, name in ((1, "switch-0000000000000001"), (3, "switch")):  # its own; Open vSwitch's shared one
        dp = FakeDatapath(dpid, certificate=name)
        state_change(controller, dp, MAIN_DISPATCHER)
        assert dp.alive
    assert set(controller._datapaths) == {1, 3}


# -- a second connection claiming a connected datapath id ---------------------------------------


def echo_reply(app, dp, xid: int) -> None:
    reply = parser.OFPEchoReply(dp)
    reply.xid = xid
    app._echo_reply(ofp_event.EventOFPEchoReply(reply))


def test_second_connection_refused_while_the_first_answers(app, caplog):
    first = join(app, S1)
    app.link.take()
    impostor = connect(app, S1, "127.0.0.2")
    xid = app._checks[S1].xid
    wait_for(lambda: first.of_type(ofp.OFPT_ECHO_REQUEST), 5, 0.01)
    (_, sent_xid, _), = first.of_type(ofp.OFPT_ECHO_REQUEST)
    assert sent_xid == xid
    echo_reply(app, impostor, xid)  # an answer on another connection is no answer from the first
    echo_reply(app, first, xid + 1)
    assert not app._checks[S1].answered.is_set()
    echo_reply(app, first, xid)
    wait_for(lambda: not impostor.alive, 5, 0.01)
    assert impostor.writes == [] and first.alive
    assert app.refused == {S1: 1} and not app._checks
    assert ("refused a second connection for datapath 0000000000000001 from 127.0.0.2:50000: "
            "the first (127.0.0.1:40001) is alive") in caplog.text
    state_change(app, impostor, DEAD_DISPATCHER)
    assert app.link.take() == []  # no leave: the datapath is still there
    app.apply_table_mod(TableMod(S1, add=(Flow(0, 1, ()),)))
    assert first.of_type(ofp.OFPT_FLOW_MOD)


def test_nothing_from_a_held_connection_reaches_the_app(app, relay):
    switch, rfvs = relay
    impostor = connect(app, S1, "127.0.0.2")
    assert S1 in app._checks
    third = connect(app, S1, "127.0.0.3")  # one check at a time: refused at once
    assert not third.alive and app.refused == {S1: 1}
    for claimed in (impostor, third):
        packet_in(app, claimed, 1, FRAME)
        packet_in(app, claimed, 1, lldp.build_probe(S1, 1, MAC), reason=ofp.OFPR_ACTION)
        status = parser.OFPPortStatus(claimed, ofp.OFPPR_MODIFY, ofport(1, config=ofp.OFPPC_PORT_DOWN))
        app._port_status(ofp_event.EventOFPPortStatus(status))
        app._error(ofp_event.EventOFPErrorMsg(from_wire(claimed, error_message(1, 2))))
    app._on_server_message(DumpTable(9, S1))
    for xid in dump_requests(switch):
        reply = parser.OFPFlowStatsReply(impostor, body=[], flags=0)
        reply.xid = xid
        app._flow_stats_reply(ofp_event.EventOFPFlowStatsReply(reply))
    assert app.link.take() == [] and packet_outs(rfvs) == []
    assert app.slow_path.packet_in == {} and app.slow_path.dropped == {}
    assert impostor.writes == []
    echo_reply(app, switch, app._checks[S1].xid)
    wait_for(lambda: not impostor.alive, 5, 0.01)
    assert app.refused == {S1: 2}


def test_a_silent_first_connection_is_replaced(app, monkeypatch, caplog):
    monkeypatch.setattr(appmod, "ECHO_TIMEOUT", 0.1)
    first = join(app, S1)
    app._on_server_message(DumpTable(9, S1))
    app.link.take()
    second = connect(app, S1, "127.0.0.2")
    wait_for(lambda: second.of_type(ofp.OFPT_MULTIPART_REQUEST), 5, 0.01)
    assert not first.alive and app.refused == {}
    assert "the first connection (127.0.0.1:40001) did not answer in 0.1 s" in caplog.text
    # the server hears of a reconnect: the dump fails, and a join replaces the old one, with no leave
    assert app.link.take() == [TableDump(9, S1, (), (), "datapath reconnected")]
    (_, xid, _), = second.of_type(ofp.OFPT_MULTIPART_REQUEST)
    stale = parser.OFPPortDescStatsReply(first, body=[ofport(7)])  # the first one, answering the second's request
    stale.xid = xid
    app._port_desc_reply(ofp_event.EventOFPPortDescStatsReply(stale))
    assert app.link.take() == []
    port_desc_reply(app, second, [ofport(1)])
    assert app.link.take() == [DatapathJoin(S1, (PortDesc(1, "p1", MAC, True),))]


def test_the_first_connection_ending_during_the_check_hands_over_at_once(app):
    first = join(app, S1)
    app.link.take()
    second = connect(app, S1, "127.0.0.2")
    state_change(app, first, DEAD_DISPATCHER)  # long before ECHO_TIMEOUT
    assert second.of_type(ofp.OFPT_MULTIPART_REQUEST) and not app._checks
    assert app.link.take() == []  # no leave: the join replaces the old one
    port_desc_reply(app, second, [ofport(1), ofport(2)])
    assert [type(m) for m in app.link.take()] == [DatapathJoin]


def test_the_second_connection_ending_during_the_check_changes_nothing(app, monkeypatch):
    monkeypatch.setattr(appmod, "ECHO_TIMEOUT", 0.05)
    check_over = threading.Event()
    check_first = app._check_first

    def checked(check):
        try:
            check_first(check)
        finally:
            check_over.set()

    monkeypatch.setattr(app, "_check_first", checked)
    first = join(app, S1)
    app.link.take()
    second = connect(app, S1, "127.0.0.2")
    state_change(app, second, DEAD_DISPATCHER)
    assert not app._checks
    assert check_over.wait(5)  # the check's own end, once its echo request times out
    assert first.alive and app._datapaths[S1] is first and app.link.take() == []
    assert second.writes == [] and app.refused == {}


def test_a_newly_replaced_connection_ending_before_its_join_is_a_leave(app):
    first = join(app, S1)
    app.link.take()
    second = connect(app, S1, "127.0.0.2")
    state_change(app, first, DEAD_DISPATCHER)
    state_change(app, second, DEAD_DISPATCHER)
    assert app.link.take() == [DatapathLeave(S1)]  # the server knew the datapath by the first one's join
