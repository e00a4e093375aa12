"""Flow/group <-> OpenFlow 1.3 conversion, checked through os-ken's own wire format."""

import struct

import pytest
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.config.schema import Config, Trunk, VmConfig, VmInterface
from routeflow.controller.openflow import reference
from routeflow.flows.compiler import compile_datapath, compile_rfvs, routing_context
from routeflow.model import (
    CONTROLLER,
    DEC_TTL,
    POP_VLAN,
    PUSH_VLAN,
    Fib,
    Flow,
    FlowKey,
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
from routeflow.protocol.messages import TableMod
from tests.tenants import CONFIG as TENANT_CONFIG
from tests.tenants import fib as tenant_fib
from tests.tenants import ports as tenant_ports

DP = reference.STANDALONE
MAC_A, MAC_B = "02:00:00:00:00:0a", "0a:00:00:00:00:0b"

FLOWS = [
    # drop
    Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.9.0.0/16")),
    # goto only
    Flow(0, 200, match(in_port=1, eth_dst=MAC_A), goto=1),
    # controller
    Flow(0, 400, match(eth_type=0x806), (CONTROLLER,)),
    Flow(1, 0, (), (CONTROLLER,)),
    # routed
    Flow(1, 1032, match(eth_type=0x800, ipv4_dst="10.0.0.1"),
         (DEC_TTL, set_field("eth_src", MAC_A), set_field("eth_dst", MAC_B), output(3))),
    Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (DEC_TTL, group(77))),
    # actions and goto together, every match field the compiler may use
    Flow(0, 300, match(in_port=2, eth_type=0x800, eth_src=MAC_B, ip_proto=6, ipv4_src="192.168.0.0/23",
                       ipv4_dst="10.1.2.3", tcp_dst=179, tcp_src=1024), (CONTROLLER,), goto=1),
    Flow(0, 300, match(eth_type=0x800, ip_proto=17, udp_dst=3784), (CONTROLLER,)),
    Flow(0, 300, match(eth_type=0x86DD, ip_proto=58, icmpv6_type=135, ipv6_dst="ff02::1:ff00:0/104",
                       ipv6_src="2001:db8::1"), (CONTROLLER,)),
    Flow(1, 1064, match(eth_type=0x86DD, ipv6_dst="2001:db8:1::/48"), (DEC_TTL, output(1))),
    # the data-plane slow path
    Flow(2, 100, match(in_port=3), (PUSH_VLAN, set_field("vlan_vid", 0x1003), output(100))),
    Flow(0, 500, match(in_port=100, vlan_vid=0x1003), (POP_VLAN, output(3))),
]

GROUPS = [
    Group(77, "select", ((set_field("eth_src", MAC_A), set_field("eth_dst", MAC_B), output(1)),
                         (set_field("eth_src", MAC_A), set_field("eth_dst", "0a:00:00:00:00:0c"), output(2)))),
    Group(78, "indirect", ((output(4),),)),
    Group(79, "all", ((output(1),), (CONTROLLER,))),
]


def wire(msg):
    """Serialise with os-ken and parse the bytes back (as the switch would read them)."""
    msg.serialize()
    version, msg_type, msg_len, xid = struct.unpack_from("!BBHI", msg.buf)
    return ofproto_parser.msg(DP, version, msg_type, msg_len, xid, bytes(msg.buf))


def flow_via_wire(flow_mod) -> Flow:
    parsed = wire(flow_mod)
    stats = parser.OFPFlowStats(table_id=parsed.table_id, priority=parsed.priority, cookie=parsed.cookie,
                                match=parsed.match, instructions=parsed.instructions)
    return reference.flow_from_stats(stats)


def group_via_wire(group_mod) -> Group:
    """A group-desc entry has the group-mod body's layout with a length instead of a command."""
    group_mod.serialize()
    body = bytes(group_mod.buf[ofp.OFP_GROUP_MOD_SIZE:])
    _, kind, group_id = struct.unpack_from("!HBxI", group_mod.buf, ofp.OFP_HEADER_SIZE)
    entry = struct.pack("!HBxI", ofp.OFP_GROUP_DESC_STATS_SIZE + len(body), kind, group_id) + body
    return reference.group_from_stats(parser.OFPGroupDescStats.parser(entry, 0))


@pytest.mark.parametrize("flow", FLOWS, ids=str)
@pytest.mark.parametrize("encode", [reference.flow_add, reference.flow_modify])
def test_flow_round_trips_through_the_wire(flow, encode):
    assert flow_via_wire(encode(flow, DP)) == flow


@pytest.mark.parametrize("flow", FLOWS, ids=str)
def test_flow_mod_fields(flow):
    mod = wire(reference.flow_add(flow))
    assert mod.command == ofp.OFPFC_ADD and mod.cookie == reference.ROUTEFLOW_COOKIE
    assert mod.buffer_id == ofp.OFP_NO_BUFFER
    assert wire(reference.flow_modify(flow)).command == ofp.OFPFC_MODIFY_STRICT


def test_drop_flow_has_no_instructions():
    assert wire(reference.flow_add(FLOWS[0])).instructions == []


def test_controller_action_sends_whole_packets():
    mod = wire(reference.flow_add(Flow(1, 0, (), (CONTROLLER,))))
    (action,) = mod.instructions[0].actions
    assert (action.port, action.max_len) == (ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)
    assert mod.instructions[0].type == ofp.OFPIT_APPLY_ACTIONS


@pytest.mark.parametrize("flow", FLOWS, ids=str)
def test_delete_is_strict_by_key_on_any_port_and_cookie(flow):
    mod = wire(reference.flow_delete(flow.key))
    assert mod.command == ofp.OFPFC_DELETE_STRICT
    assert (mod.out_port, mod.out_group, mod.cookie_mask) == (ofp.OFPP_ANY, ofp.OFPG_ANY, 0)
    assert (mod.table_id, mod.priority, reference.decode_match(mod.match)) == (flow.table, flow.priority, flow.match)
    assert mod.instructions == []


@pytest.mark.parametrize("grp", GROUPS, ids=str)
@pytest.mark.parametrize("encode", [reference.group_add, reference.group_modify])
def test_group_round_trips_through_the_wire(grp, encode):
    assert group_via_wire(encode(grp, DP)) == grp


def test_select_buckets_weigh_one_and_watch_nothing():
    mod = reference.group_add(GROUPS[0])
    assert mod.command == ofp.OFPGC_ADD and mod.type == ofp.OFPGT_SELECT
    assert [(b.weight, b.watch_port, b.watch_group) for b in mod.buckets] == [(1, ofp.OFPP_ANY, ofp.OFPG_ANY)] * 2
    assert reference.group_modify(GROUPS[0]).command == ofp.OFPGC_MODIFY
    delete = reference.group_delete(77)
    assert (delete.command, delete.group_id, delete.buckets) == (ofp.OFPGC_DELETE, 77, [])


@pytest.mark.parametrize("trunk", [None, Trunk(100)], ids=["relay", "trunk"])
def test_everything_the_compiler_emits_round_trips(trunk):
    vm = VmConfig(name="rA", dpid=1, interfaces=(VmInterface("eth1", 1, ("172.31.1.1/24",)),
                                                  VmInterface("eth2", 2, ("10.0.2.1/30",))), trunk=trunk)
    fib = Fib(
        (Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",)),
         Interface("eth2", "02:00:00:00:00:02", True, ("10.0.2.1/30",))),
        (Route("172.31.1.0/24", (NextHop("eth1"),)), Route("10.0.2.0/30", (NextHop("eth2"),)),
         Route("10.5.0.0/16", (NextHop("eth1", "172.31.1.9"), NextHop("eth2", "10.0.2.2"))),
         Route("10.6.0.0/16", (NextHop("eth2", "10.0.2.2"),)),
         Route("10.7.0.0/16", type="blackhole"), Route("10.8.0.0/16", type="unreachable")),
        (Neighbour("eth1", "172.31.1.9", "0a:00:00:00:00:09"), Neighbour("eth2", "10.0.2.2", "0a:00:00:00:00:02")),
    )
    ports = {n: PortDesc(n, f"s1-eth{n}", f"aa:00:00:00:00:0{n}", True) for n in (1, 2)}
    table = compile_datapath(vm, fib, ports).table
    assert table.groups, "the example should exercise a select group"
    rfvs = compile_rfvs(Config(vms=(vm,)), {("rA", "eth1"): 5, ("rA", "eth2"): 6},
                        {7: PortDesc(7, "rft1-rf", "aa:00:00:00:00:07", True)})
    for flow in [*table.flows.values(), *rfvs.flows.values()]:
        assert flow_via_wire(reference.flow_add(flow)) == flow
    for grp in table.groups.values():
        assert group_via_wire(reference.group_add(grp)) == grp


def test_what_the_compiler_emits_for_shared_datapaths_round_trips():
    for vm in TENANT_CONFIG.vms:
        table = compile_datapath(vm, tenant_fib(vm.name), tenant_ports(), routing_context(TENANT_CONFIG, vm)).table
        for flow in table.flows.values():
            assert flow_via_wire(reference.flow_add(flow)) == flow


def test_stats_to_flow():
    stats = parser.OFPFlowStats(
        table_id=1, priority=1024, cookie=0,
        match=parser.OFPMatch(eth_type=0x800, ipv4_dst=("10.0.0.0", "255.255.255.0")),
        instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [
            parser.OFPActionDecNwTtl(), parser.OFPActionSetField(eth_dst="0A:00:00:00:00:01"),
            parser.OFPActionOutput(3, 0)])],
    )
    assert reference.flow_from_stats(stats) == Flow(
        1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"),
        (DEC_TTL, set_field("eth_dst", "0a:00:00:00:00:01"), output(3)))


def test_stats_normalise_what_the_switch_may_return():
    stats = parser.OFPFlowStats(
        table_id=0, priority=5, cookie=0,
        # a /32 given as a mask, an upper-case MAC, controller output with a short max_len
        match=parser.OFPMatch(ipv4_dst=("10.0.0.1", "255.255.255.255"), eth_type=0x800, eth_src="AA:BB:CC:DD:EE:FF"),
        instructions=[
            parser.OFPInstructionGotoTable(1),
            parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, 128)]),
        ],
    )
    flow = reference.flow_from_stats(stats)
    assert flow == Flow(0, 5, match(eth_type=0x800, eth_src="aa:bb:cc:dd:ee:ff", ipv4_dst="10.0.0.1"), (CONTROLLER,), 1)
    assert flow.match == tuple(sorted(flow.match))


def test_foreign_entries_decode_as_differences_instead_of_failing():
    stats = parser.OFPFlowStats(
        table_id=0, priority=1, cookie=0,
        match=parser.OFPMatch(vlan_vid=(0x1000, 0x1000), ipv4_dst=("10.0.0.0", "255.0.255.0"), eth_type=0x800),
        instructions=[parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [parser.OFPActionOutput(1, 0)]),
                      parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionSetQueue(3)])],
    )
    flow = reference.flow_from_stats(stats)
    assert dict(flow.match) == {"eth_type": 0x800, "ipv4_dst": "10.0.0.0/255.0.255.0", "vlan_vid": "4096/4096"}
    assert [a[0] for a in flow.actions] == ["unknown", "unknown"]
    assert flow not in FLOWS


def test_group_desc_to_group():
    stats = parser.OFPGroupDescStats(ofp.OFPGT_SELECT, 5, [
        parser.OFPBucket(1, ofp.OFPP_ANY, ofp.OFPG_ANY, [parser.OFPActionOutput(1, 0)]),
        parser.OFPBucket(1, ofp.OFPP_ANY, ofp.OFPG_ANY, [parser.OFPActionOutput(2, 0)]),
    ])
    assert reference.group_from_stats(stats) == Group(5, "select", ((output(1),), (output(2),)))
    assert reference.group_from_stats(parser.OFPGroupDescStats(ofp.OFPGT_FF, 6, [])).type == "fast_failover"


@pytest.mark.parametrize("bad", [
    Flow(0, 1, match(ipv4_dst="10.0.0.1/24", eth_type=0x800)),  # host bits set
    Flow(0, 1, match(ipv4_dst="not-an-ip", eth_type=0x800)),
    Flow(0, 1, (), (("teleport", 3),)),
    Flow(0, 1, (), (("set_field", "ipv4_dst", "10.0.0.0/8"),)),
])
def test_unencodable_flows_raise_value_error(bad):
    with pytest.raises(ValueError):
        reference.flow_add(bad)


def test_table_mod_order_and_barriers():
    mod = TableMod(
        1,
        add=(FLOWS[5],),
        modify=(FLOWS[4],),
        delete=(FLOWS[3].key,),
        group_add=(GROUPS[0],),
        group_modify=(GROUPS[1],),
        group_delete=(79,),
    )
    msgs, errors = reference.encode_table_mod(mod)
    assert errors == []

    def kind(m):
        if isinstance(m, parser.OFPBarrierRequest):
            return "barrier"
        names = {ofp.OFPFC_ADD: "flow_add", ofp.OFPFC_MODIFY_STRICT: "flow_modify",
                 ofp.OFPFC_DELETE_STRICT: "flow_delete"}
        if isinstance(m, parser.OFPFlowMod):
            return names[m.command]
        names = {ofp.OFPGC_ADD: "group_add", ofp.OFPGC_MODIFY: "group_modify", ofp.OFPGC_DELETE: "group_delete"}
        return names[m.command]

    assert [kind(m) for m in msgs] == [
        "group_add", "group_modify", "barrier",
        "flow_add", "flow_modify", "flow_delete", "barrier",
        "group_delete", "barrier",
    ]


def test_table_mod_reports_bad_entries_and_keeps_the_rest():
    msgs, errors = reference.encode_table_mod(TableMod(1, add=(Flow(0, 1, (), (("teleport",),)), FLOWS[3])))
    assert len(errors) == 1 and "teleport" in errors[0]
    assert [type(m).__name__ for m in msgs] == ["OFPFlowMod", "OFPBarrierRequest"]
    assert reference.encode_table_mod(TableMod(1)) == ([], [])


def test_flow_key_of_table_mod_delete_is_accepted():
    msgs, _ = reference.encode_table_mod(TableMod(2, delete=(FlowKey(1, 0, ()),)))
    assert msgs[0].table_id == 1 and msgs[0].priority == 0
