"""Seed corpora: valid inputs of every fuzzed surface, from the golden captures in
``tests/golden`` and ``tests/unit/controller/golden``, the files in ``examples/`` and
``bench/topologies/``, and routeflow's (and os-ken's) own encoders.

Everything is computed once per process (``functools.cache``).
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.openflow import reference
from routeflow.model import (
    CONTROLLER,
    DEC_TTL,
    POP_VLAN,
    PUSH_VLAN,
    Fib,
    Flow,
    Group,
    Interface,
    Neighbour,
    NextHop,
    PortDesc,
    Route,
    group,
    match,
    output,
    set_field,
)
from routeflow.protocol import lldp, mapping
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    Challenge,
    ControllerStats,
    DatapathJoin,
    DatapathLeave,
    DiscoveryPlan,
    DumpTable,
    FibAudit,
    FibDelta,
    FibSnapshot,
    Goodbye,
    Hello,
    LinkChange,
    LinkState,
    MappingSeen,
    Message,
    PortChange,
    PortMapped,
    Proof,
    RelayEntry,
    RelayMap,
    ResolveNextHops,
    SnapshotRequest,
    StatsRequest,
    StatusReply,
    StatusRequest,
    SwitchError,
    TableDump,
    TableMod,
    VerifyReply,
    VerifyRequest,
    Welcome,
)

ROOT = Path(__file__).resolve().parents[1]
NETLINK_GOLDEN = ROOT / "tests" / "golden" / "netlink"
OPENFLOW_GOLDEN = ROOT / "tests" / "unit" / "controller" / "golden" / "ovs-dump.json"
EXAMPLES = ROOT / "examples"
BENCH_TOPOLOGIES = ROOT / "bench" / "topologies"

# -- RF-protocol -------------------------------------------------------------------------------

PORTS = (PortDesc(1, "s1-eth1", "aa:00:00:00:00:01", True), PortDesc(2, "s1-eth2", "aa:00:00:00:00:02", True))
FLOW = Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (DEC_TTL, output(2)))
GROUP = Group(3, "select", ((output(1),), (CONTROLLER,)))
FIB = Fib(
    (Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",)),
     Interface("eth2", "02:00:00:00:00:02", True, ("172.31.2.1/24", "2001:db8:2::1/64", "fe80::2/64"))),
    (Route("172.31.1.0/24", (NextHop("eth1"),), proto="kernel"),
     Route("172.31.2.0/24", (NextHop("eth2"),), proto="kernel"),
     Route("10.9.0.0/16", (NextHop("eth1", "172.31.1.2"), NextHop("eth2", "172.31.2.2")), proto="ospf"),
     Route("2001:db8:9::/48", (NextHop("eth2", "fe80::9"),), proto="ospf6"),
     Route("198.51.100.0/24", (NextHop("eth2", "172.31.2.99"),), proto="bgp"),
     Route("192.0.2.0/24", (), "blackhole", "static")),
    (Neighbour("eth1", "172.31.1.2", "0a:00:00:00:00:01"), Neighbour("eth2", "172.31.2.2", "0a:00:00:00:00:02"),
     Neighbour("eth2", "fe80::9", "0a:00:00:00:00:09")),
)


@functools.cache
def rf_messages() -> list[Message]:
    """One valid message of every RF-protocol type (and a few more of the bulky ones)."""
    hexa = "0123456789abcdef" * 2
    return [
        Hello(PROTOCOL_VERSION, "client", "rA", hexa),
        Hello(PROTOCOL_VERSION, "controller", "controller", hexa * 2),
        Challenge(hexa, hexa),
        Proof(hexa),
        Welcome(PROTOCOL_VERSION, (0x7266,)),
        Goodbye("bye"),
        DatapathJoin(1, PORTS),
        DatapathLeave(1),
        PortChange(1, PortDesc(1, "s1-eth1", "aa:00:00:00:00:01", False)),
        PortChange(1, PORTS[1], deleted=True),
        MappingSeen(0x7266, 7, "rA", "eth2"),
        LinkChange(1, 3, 2, 2, True),
        TableDump(1, 1, (FLOW, Flow(0, 200, match(in_port=1, eth_dst="02:00:00:00:00:01"), goto=1)), (GROUP,)),
        TableDump(2, 1, (), (), "switch gone", more=True),
        SwitchError(1, "OFPET_BAD_ACTION"),
        ControllerStats(1, {1: 5}, {1: 3}, {1: {"arp": 2, "ospf": 3}}, {1: 1}),
        RelayMap((RelayEntry(1, 2, 0x7266, 7),)),
        DiscoveryPlan((1, 2), 0.25),
        TableMod(1, add=(FLOW,), modify=(FLOW,), delete=(FLOW.key,), group_add=(GROUP,), group_modify=(GROUP,),
                 group_delete=(3,)),
        DumpTable(1, 1),
        StatsRequest(4),
        FibSnapshot(FIB),
        FibSnapshot(Fib(routes=FIB.routes[:2]), request_id=9, more=True),
        FibDelta(interfaces_set=FIB.interfaces[:1], interfaces_del=("eth3",), routes_set=FIB.routes[2:4],
                 routes_del=("10.8.0.0/16",), neighbours_set=FIB.neighbours[:1],
                 neighbours_del=(("eth1", "172.31.1.3"),)),
        FibAudit(audits=7, repaired=2, last_repair="2026-12-03T15:00:00Z", seconds=0.012),
        PortMapped("eth1", 1, 1),
        LinkState("eth1", False),
        ResolveNextHops((("eth2", "172.31.2.99"),)),
        SnapshotRequest(3),
        StatusRequest(5, detail=False),
        StatusReply(5, {"datapaths": [], "vms": [{"name": "rA"}]}),
        VerifyRequest(6),
        VerifyReply(6, False, ("rA: route 10.0.0.0/24 missing",), {"flows": 12}),
    ]


# -- server core -------------------------------------------------------------------------------

#: Configs the core is fuzzed with (parse_config documents): one plain VM, and two VMs with a
#: trunk, the virtual routing plane, IPv6 and a loopback.
CORE_CONFIGS: list[dict[str, object]] = [
    {"vms": [{"name": "rA", "dpid": 1, "engine": "none", "interfaces": [
        {"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]},
        {"name": "eth2", "port": 2, "addresses": ["172.31.2.1/24"]},
    ]}]},
    {"vms": [
        {"name": "rA", "dpid": 1, "engine": "none", "routing_plane": "virtual", "trunk": {"port": 100},
         "loopback": ["10.255.0.1/32", "2001:db8:ff::1/128"], "interfaces": [
             {"name": "eth1", "port": 1, "mac": "02:52:46:01:00:01",
              "addresses": ["172.31.1.1/24", "2001:db8:1::1/64"]},
             {"name": "eth2", "port": 2, "addresses": ["172.31.2.1/24", "2001:db8:2::1/64"]},
             {"name": "eth3", "port": 3, "addresses": ["10.0.12.1/24"]}]},
        {"name": "rB", "dpid": 2, "engine": "none", "routing_plane": "virtual", "interfaces": [
            {"name": "eth1", "port": 1, "addresses": ["10.0.12.2/24", "2001:db8:12::2/64"]}]},
    ], "discovery": {"interval": 0.25}},
]

#: A core event: ("controller_up",), ("controller_down",), ("client_up", vm), ("client_down", vm),
#: ("controller", message), ("client", vm, message), ("reconcile",), ("resolve", now), ("status", detail).
CoreEvent = tuple[object, ...]


def core_scenarios() -> list[tuple[int, list[CoreEvent]]]:
    """The unit tests' stories (tests/unit/server/test_core.py), as event lists."""
    fib_b = Fib((Interface("eth1", "02:00:00:00:00:0b", True, ("10.0.12.2/24", "fe80::b/64")),),
                (Route("10.0.12.0/24", (NextHop("eth1"),), proto="kernel"),
                 Route("172.31.1.0/24", (NextHop("eth1", "10.0.12.1"),), proto="ospf")),
                (Neighbour("eth1", "10.0.12.1", "02:52:46:01:00:03"),))
    trunk = PortDesc(9, "rft1-rf", "aa:00:00:00:00:09", True)
    return [
        (0, [("controller_up",), ("controller", DatapathJoin(1, PORTS)), ("controller", TableDump(1, 1, (), ())),
             ("client_up", "rA"), ("client", "rA", FibSnapshot(FIB)), ("reconcile",),
             ("client", "rA", FibDelta(neighbours_del=(("eth1", "172.31.1.2"),))), ("reconcile",),
             ("controller", PortChange(1, PortDesc(1, "s1-eth1", "aa:00:00:00:00:01", False))), ("reconcile",),
             ("resolve", 0.0), ("resolve", 1.0), ("controller", SwitchError(1, "OFPET_BAD_ACTION")),
             ("controller", TableDump(2, 1, (FLOW,), (GROUP,))), ("reconcile",), ("status", True),
             ("controller", DatapathLeave(1)), ("controller_down",), ("client_down", "rA")]),
        (0, [("controller", MappingSeen(0x7266, 7, "rA", "eth2")), ("controller", MappingSeen(0x7266, 8, "rZ", "eth1")),
             ("controller", DatapathJoin(0x7266, ())), ("controller", TableDump(1, 0x7266, (), ())), ("reconcile",),
             ("client", "rA", FibAudit(3, 0)), ("client", "rA", FibAudit(4, 2, "2026-12-03T15:00:00Z")),
             ("status", False)]),
        (1, [("controller_up",), ("controller", DatapathJoin(0x7266, (trunk,))),
             ("controller", TableDump(1, 0x7266, (), ())), ("controller", DatapathJoin(1, PORTS)),
             ("controller", TableDump(2, 1, (), ())), ("controller", DatapathJoin(2, PORTS[:1])),
             ("controller", TableDump(3, 2, (), ())),
             ("controller", MappingSeen(0x7266, 11, "rA", "eth3")),
             ("controller", MappingSeen(0x7266, 12, "rB", "eth1")),
             ("controller", LinkChange(1, 3, 2, 1, True)), ("controller", LinkChange(2, 1, 1, 3, True)),
             ("client", "rA", FibSnapshot(FIB)), ("client", "rB", FibSnapshot(fib_b)), ("reconcile",),
             ("client", "rB", FibDelta(routes_set=(Route("10.9.0.0/16", (NextHop("eth1", "10.0.12.1"),)),))),
             ("controller", LinkChange(2, 1, 1, 3, False)), ("reconcile",), ("resolve", 0.0), ("status", True)]),
    ]


# -- OpenFlow ----------------------------------------------------------------------------------

MP_HEADER = struct.Struct("!BBHIHH4x")
SEED_FLOWS = [
    Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.9.0.0/16")),
    Flow(0, 200, match(in_port=1, eth_dst="02:00:00:00:00:0a"), goto=1),
    Flow(0, 400, match(eth_type=0x806), (CONTROLLER,)),
    Flow(1, 0, (), (CONTROLLER,)),
    Flow(1, 1032, match(eth_type=0x800, ipv4_dst="10.0.0.1"),
         (DEC_TTL, set_field("eth_src", "02:00:00:00:00:0a"), set_field("eth_dst", "0a:00:00:00:00:0b"), output(3))),
    Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (DEC_TTL, group(77))),
    Flow(0, 300, match(in_port=2, eth_type=0x800, ip_proto=6, ipv4_src="192.168.0.0/23", tcp_dst=179),
         (CONTROLLER,), goto=1),
    Flow(0, 300, match(eth_type=0x86DD, ip_proto=58, icmpv6_type=135, ipv6_dst="ff02::1:ff00:0/104"), (CONTROLLER,)),
    Flow(1, 1064, match(eth_type=0x86DD, ipv6_dst="2001:db8:1::/48"), (DEC_TTL, output(1))),
    Flow(2, 100, match(in_port=3), (PUSH_VLAN, set_field("vlan_vid", 0x1003), output(100))),
    Flow(0, 500, match(in_port=100, vlan_vid=0x1003), (POP_VLAN, output(3))),
    Flow(0, 1, match(eth_type=0x806, arp_op=1), (CONTROLLER,)),  # os-ken's path
    Flow(0, 1, match(eth_dst="01:00:00:00:00:00/01:00:00:00:00:00"), (CONTROLLER,)),
]
SEED_GROUPS = [
    Group(77, "select", ((set_field("eth_src", "02:00:00:00:00:0a"), output(1)), (output(2),))),
    Group(78, "indirect", ((output(4),),)),
    Group(79, "all", ((output(1),), (CONTROLLER,))),
    Group(80, "fast_failover", ((output(1),),)),
    Group(81, "select", ()),
]


def _flow_stats_entry(mod: parser.OFPFlowMod) -> bytes:
    """An ``ofp_flow_stats`` with what os-ken serialises for the flow mod's match and instructions."""
    mod.set_xid(0)
    mod.serialize()
    body = bytes(mod.buf)[ofp.OFP_FLOW_MOD_SIZE - ofp.OFP_MATCH_SIZE:]
    return struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, ofp.OFP_FLOW_STATS_0_SIZE + len(body), mod.table_id,
                       3, 7, mod.priority, 0, 0, 0, mod.cookie, 11, 1234) + body


def _group_desc_entry(mod: parser.OFPGroupMod) -> bytes:
    mod.set_xid(0)
    mod.serialize()
    body = bytes(mod.buf[ofp.OFP_GROUP_MOD_SIZE:])
    return struct.pack("!HBxI", ofp.OFP_GROUP_DESC_STATS_SIZE + len(body), mod.type, mod.group_id) + body


def of_reply(kind: int, entries: list[bytes], xid: int = 9) -> bytes:
    body = b"".join(entries)
    return MP_HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, ofp.OFP_MULTIPART_REPLY_SIZE + len(body),
                          xid, kind, 0) + body


def _entries(reply: bytes) -> list[bytes]:
    out, offset = [], ofp.OFP_MULTIPART_REPLY_SIZE
    while offset + 2 <= len(reply):
        (length,) = struct.unpack_from("!H", reply, offset)
        if length == 0:
            break
        out.append(reply[offset:offset + length])
        offset += length
    return out


def _nx_ct(*actions: object) -> object:
    return parser.NXActionCT(flags=1, zone_src="", zone_ofs_nbits=0, recirc_table=255, alg=0, actions=list(actions))


@functools.cache
def of_entries() -> tuple[list[bytes], list[bytes]]:
    """(flow-stats entries, group-desc entries): routeflow's shapes, foreign ones, nested
    Nicira actions, and every entry of the Open vSwitch capture."""
    apply = parser.OFPInstructionActions
    flows = [_flow_stats_entry(reference.flow_add(f)) for f in SEED_FLOWS]
    flows += [_flow_stats_entry(parser.OFPFlowMod(reference.STANDALONE, table_id=0, priority=6, match=m,
                                                  instructions=i)) for m, i in [
        (parser.OFPMatch(in_port=1), [apply(ofp.OFPIT_APPLY_ACTIONS, [_nx_ct(parser.OFPActionOutput(2, 0))])]),
        (parser.OFPMatch(metadata=(5, 0xFF)), [parser.OFPInstructionWriteMetadata(1, 0xFF),
                                                parser.OFPInstructionMeter(2)]),
        (parser.OFPMatch(eth_type=0x800, ipv4_dst=("10.0.0.0", "255.0.255.0")),
         [apply(ofp.OFPIT_WRITE_ACTIONS, [parser.OFPActionGroup(3)])]),
    ]]
    groups = [_group_desc_entry(reference.group_add(g)) for g in SEED_GROUPS]
    bucket = parser.OFPBucket(1, ofp.OFPP_ANY, ofp.OFPG_ANY,
                              [parser.OFPActionPushVlan(), _nx_ct(parser.OFPActionOutput(2, 0))])
    groups.append(_group_desc_entry(parser.OFPGroupMod(reference.STANDALONE, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 5,
                                                       [bucket])))
    for reply in of_golden_replies():
        kind = struct.unpack_from("!H", reply, 8)[0]
        (flows if kind == ofp.OFPMP_FLOW else groups).extend(_entries(reply))
    return flows, groups


@functools.cache
def of_golden_replies() -> list[bytes]:
    if not OPENFLOW_GOLDEN.exists():
        return []
    return [bytes.fromhex(h) for h in json.loads(OPENFLOW_GOLDEN.read_text())["replies"]]


@functools.cache
def of_small_replies() -> list[bytes]:
    """Replies of one to three seed entries: what mutations start from."""
    flows, groups = of_entries()
    out = []
    for kind, pool in ((ofp.OFPMP_FLOW, flows), (ofp.OFPMP_GROUP_DESC, groups)):
        out += [of_reply(kind, [e]) for e in pool[:48]]
        out += [of_reply(kind, [pool[i], pool[(i * 7 + 3) % len(pool)]]) for i in range(0, len(pool), 5)]
        out.append(of_reply(kind, []))
    return out


def _of(kind: int, body: bytes, xid: int = 1, version: int = ofp.OFP_VERSION) -> bytes:
    return struct.pack("!BBHI", version, kind, 8 + len(body), xid) + body


def _packet_in(in_port: int, data: bytes) -> bytes:
    """An OFPT_PACKET_IN body: no buffer, whole frame, match on in_port (padded to 8)."""
    oxm_match = struct.pack("!HHII4x", ofp.OFPMT_OXM, 12, 0x80000004, in_port)
    return struct.pack("!IHBBQ", ofp.OFP_NO_BUFFER, len(data), ofp.OFPR_ACTION, 0, 0) + oxm_match + b"\0\0" + data


def _ofp_port(port_no: int, name: bytes, state: int = 0) -> bytes:
    return struct.pack("!I4x6s2x16sIIIIIIII", port_no, bytes.fromhex("aa0000000001"), name, 0, state,
                       0, 0, 0, 0, 10_000_000, 10_000_000)


@functools.cache
def of_messages() -> list[bytes]:
    """Whole OpenFlow messages a switch sends: what os-ken's (guarded) parsers read."""
    probe = lldp.build_probe(1, 3, "aa:00:00:00:00:03")
    mapping_frame = mapping.encode("rA", "eth1", "02:00:00:00:00:01")
    flow_removed = struct.pack("!QHBBIIHHQQ", 0, 7, 0, 1, 1, 2, 0, 0, 5, 6) + struct.pack("!HH4x", 1, 4)
    return [
        _of(ofp.OFPT_HELLO, struct.pack("!HHI", 1, 8, 1 << 4)),
        _of(ofp.OFPT_HELLO, b"", version=1),
        _of(ofp.OFPT_ECHO_REQUEST, b"ping"),
        _of(ofp.OFPT_ERROR, struct.pack("!HH", 2, 4) + bytes(16)),
        _of(ofp.OFPT_FEATURES_REPLY, struct.pack("!QIBB2xII", 1, 256, 254, 0, 0x4F, 0)),
        _of(ofp.OFPT_PORT_STATUS, struct.pack("!B7x", 2) + _ofp_port(1, b"s1-eth1", 1)),
        _of(ofp.OFPT_PACKET_IN, _packet_in(3, probe)),
        _of(ofp.OFPT_PACKET_IN, _packet_in(7, mapping_frame)),
        _of(ofp.OFPT_FLOW_REMOVED, flow_removed),
        _of(ofp.OFPT_BARRIER_REPLY, b""),
        _of(ofp.OFPT_MULTIPART_REPLY, struct.pack("!HH4x", ofp.OFPMP_PORT_DESC, 0)
            + _ofp_port(1, b"s1-eth1") + _ofp_port(0xFFFFFFFE, b"s1")),
        _of(ofp.OFPT_MULTIPART_REPLY, struct.pack("!HH4x", ofp.OFPMP_DESC, 0) + bytes(256 * 4 + 32)),
        *of_small_replies()[:8],
        *[r for r in of_small_replies() if struct.unpack_from("!H", r, 8)[0] == ofp.OFPMP_GROUP_DESC][:4],
    ]


# -- Netlink -----------------------------------------------------------------------------------


@functools.cache
def netlink_dumps() -> list[list[bytes]]:
    """The datagrams of each golden dump (tests/golden/netlink/dump*.json), in order."""
    return [[bytes.fromhex(h) for h in json.loads(path.read_text())["messages"]]
            for path in sorted(NETLINK_GOLDEN.glob("dump*.json"))]


@functools.cache
def netlink_event_steps() -> list[list[bytes]]:
    """The datagrams of each golden event step (tests/golden/netlink/events*.json)."""
    steps = []
    for path in sorted(NETLINK_GOLDEN.glob("events*.json")):
        steps += [[bytes.fromhex(h) for h in step["messages"]] for step in json.loads(path.read_text())["steps"]]
    return [s for s in steps if s]


def netlink_messages(data: bytes) -> list[bytes]:
    """Each netlink message of a datagram, as a datagram of its own."""
    out, offset = [], 0
    while offset + 16 <= len(data):
        (length,) = struct.unpack_from("=I", data, offset)
        if length < 16 or offset + length > len(data):
            break
        out.append(data[offset:offset + length])
        offset += (length + 3) & ~3
    return out


@functools.cache
def netlink_datagrams() -> list[bytes]:
    """Every golden datagram, and every message of them on its own (mutations start from these)."""
    whole = [d for dump in netlink_dumps() for d in dump] + [d for step in netlink_event_steps() for d in step]
    single = [m for d in whole for m in netlink_messages(d)]
    seen: dict[bytes, None] = {}
    for d in single + whole:
        seen.setdefault(d, None)
    return list(seen)


# -- frames ------------------------------------------------------------------------------------


def _ethernet(eth_type: int, payload: bytes) -> bytes:
    return bytes.fromhex("ffffffffffff0a0000000001") + struct.pack("!H", eth_type) + payload


@functools.cache
def frames() -> list[bytes]:
    return [
        lldp.build_probe(1, 3, "aa:00:00:00:00:03"),
        lldp.build_probe(0xFFFFFFFFFFFFFFFF, 0xFFFFFF00, "02:00:00:00:00:01"),
        mapping.encode("rA", "eth1", "02:52:46:01:00:01"),
        mapping.encode("r" * 255, "é" * 7, "02:52:46:01:00:01"),
        _ethernet(0x0806, bytes.fromhex("0001080006040001") + bytes(20)),  # ARP request
        _ethernet(0x8100, struct.pack("!HH", 100, 0x0800) + bytes.fromhex("45c0004c000000000159") + bytes(10)),
        _ethernet(0x86DD, bytes.fromhex("6000000000203aff") + bytes(32) + bytes([135]) + bytes(31)),  # NS
    ]


# -- configuration files -----------------------------------------------------------------------


@functools.cache
def config_files() -> list[bytes]:
    return [p.read_bytes() for p in sorted(EXAMPLES.glob("*/routeflow.yaml")) + sorted(
        BENCH_TOPOLOGIES.glob("*/routeflow.yaml"))]


@functools.cache
def topology_files() -> list[bytes]:
    return [p.read_bytes() for p in sorted(EXAMPLES.glob("*/topology.yaml")) + sorted(
        BENCH_TOPOLOGIES.glob("*/topology.yaml"))]
