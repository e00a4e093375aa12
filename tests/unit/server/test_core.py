"""The server core as a state machine: events in, commands out, no sockets."""

from routeflow.config.loader import parse_config
from routeflow.model import Fib, Interface, Neighbour, NextHop, PortDesc, Route
from routeflow.protocol.messages import (
    DatapathJoin,
    DatapathLeave,
    DiscoveryPlan,
    DumpTable,
    FibAudit,
    FibDelta,
    FibSnapshot,
    LinkChange,
    LinkState,
    MappingSeen,
    PortChange,
    PortMapped,
    RelayMap,
    ResolveNextHops,
    SwitchError,
    TableDump,
    TableMod,
)
from routeflow.server.core import CONTROLLER, ServerCore
from routeflow.server.status import status_document

CONFIG = parse_config({
    "vms": [{"name": "rA", "dpid": 1, "engine": "none", "interfaces": [
        {"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]},
        {"name": "eth2", "port": 2, "addresses": ["172.31.2.1/24"]},
    ]}],
})
RFVS = CONFIG.rfvs.dpid
PORTS = (PortDesc(1, "s1-eth1", "aa:00:00:00:00:01", True), PortDesc(2, "s1-eth2", "aa:00:00:00:00:02", True))
FIB = Fib(
    (Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",)),
     Interface("eth2", "02:00:00:00:00:02", True, ("172.31.2.1/24",))),
    (Route("172.31.1.0/24", (NextHop("eth1"),)), Route("172.31.2.0/24", (NextHop("eth2"),))),
    (Neighbour("eth1", "172.31.1.2", "0a:00:00:00:00:01"),),
)


def messages(out, kind, to=None):
    return [o.msg for o in out if isinstance(o.msg, kind) and (to is None or o.to == to)]


def joined_core() -> tuple[ServerCore, list]:
    core = ServerCore(CONFIG)
    core.on_controller_up()
    out = core.on_datapath_join(DatapathJoin(1, PORTS))
    (dump,) = messages(out, DumpTable)
    core.on_table_dump(TableDump(dump.request_id, 1, (), ()))
    return core, out


def test_no_flows_until_the_vm_has_synced():
    core, _ = joined_core()
    assert core.reconcile() == []  # after a server restart the switch keeps its flows
    core.on_fib_snapshot("rA", FibSnapshot(FIB))
    (mod,) = messages(core.reconcile(), TableMod, CONTROLLER)
    assert mod.dpid == 1 and mod.add and not mod.delete
    assert core.reconcile() == []


def test_delta_changes_only_what_changed():
    core, _ = joined_core()
    core.on_fib_snapshot("rA", FibSnapshot(FIB))
    core.reconcile()
    core.on_fib_delta("rA", FibDelta(neighbours_del=(("eth1", "172.31.1.2"),)))
    (mod,) = messages(core.reconcile(), TableMod)
    assert len(mod.delete) == 1 and not mod.add and not mod.modify
    assert ("ipv4_dst", "172.31.1.2") in mod.delete[0].match


def test_resync_against_the_switchs_real_table():
    core, _ = joined_core()
    core.on_fib_snapshot("rA", FibSnapshot(FIB))
    (mod,) = messages(core.reconcile(), TableMod)
    # Controller restart: the switch still holds everything plus one stale flow.
    core.on_controller_down()
    core.on_controller_up()
    (dump,) = messages(core.on_datapath_join(DatapathJoin(1, PORTS)), DumpTable)
    stale = mod.add[0].__class__(1, 1099, (("eth_type", 2048), ("ipv4_dst", "192.0.2.0/24")), (("controller",),))
    core.on_table_dump(TableDump(dump.request_id, 1, mod.add + (stale,), ()))
    (fix,) = messages(core.reconcile(), TableMod)
    assert fix.delete == (stale.key,) and not fix.add


def test_port_status_mirrors_onto_vm_interface_and_flows():
    core, out = joined_core()
    assert {(m.ifname, m.up) for m in messages(out, LinkState, "rA")} == {("eth1", True), ("eth2", True)}
    core.on_fib_snapshot("rA", FibSnapshot(FIB))
    core.reconcile()
    out = core.on_port_change(PortChange(1, PortDesc(1, "s1-eth1", "aa:00:00:00:00:01", False)))
    assert messages(out, LinkState, "rA") == [LinkState("eth1", False)]
    (mod,) = messages(core.reconcile(), TableMod)
    assert mod.delete  # host flow and admission rule of port 1 are gone
    out = core.on_datapath_leave(DatapathLeave(1))
    assert {m.up for m in messages(out, LinkState)} == {False}


def test_mapping_packet_acknowledged_and_relay_map_updated():
    core = ServerCore(CONFIG)
    out = core.on_mapping_seen(MappingSeen(RFVS, 7, "rA", "eth2"))
    assert messages(out, PortMapped, "rA") == [PortMapped("eth2", 1, 2)]
    (relay,) = messages(out, RelayMap, CONTROLLER)
    assert [(e.dpid, e.port, e.rfvs_port) for e in relay.entries] == [(1, 2, 7)]
    # Seen again on the same port: acknowledged, relay map unchanged.
    out = core.on_mapping_seen(MappingSeen(RFVS, 7, "rA", "eth2"))
    assert not messages(out, RelayMap)
    assert core.on_mapping_seen(MappingSeen(RFVS, 8, "rZ", "eth1")) == []


def test_switch_error_triggers_a_fresh_dump():
    core, _ = joined_core()
    out = core.on_switch_error(SwitchError(1, "OFPET_BAD_ACTION"))
    assert messages(out, DumpTable)
    assert core.nib.datapaths[1].installed is None


def test_rfvs_gets_its_relay_table():
    core = ServerCore(CONFIG)
    core.on_controller_up()
    (dump,) = messages(core.on_datapath_join(DatapathJoin(RFVS, ())), DumpTable)
    core.on_table_dump(TableDump(dump.request_id, RFVS, (), ()))
    (mod,) = messages(core.reconcile(), TableMod)
    assert mod.dpid == RFVS and {f.actions for f in mod.add} == {(("controller",),)}


def test_mapping_a_trunked_nic_cables_it_to_the_trunk_on_the_rfvs():
    config = parse_config({"vms": [{"name": "rA", "dpid": 1, "engine": "none", "trunk": {"port": 100},
                                    "interfaces": [{"name": "eth1", "port": 1}]}]})
    core = ServerCore(config)
    core.on_controller_up()
    trunk = PortDesc(9, "rft1-rf", "aa:00:00:00:00:09", True)
    (dump,) = messages(core.on_datapath_join(DatapathJoin(RFVS, (trunk,))), DumpTable)
    core.on_table_dump(TableDump(dump.request_id, RFVS, (), ()))
    (first,) = messages(core.reconcile(), TableMod)
    assert not [f for f in first.add if f.actions and f.actions[0] == ("push_vlan", 0x8100)]
    core.on_mapping_seen(MappingSeen(RFVS, 4, "rA", "eth1"))
    (mod,) = messages(core.reconcile(), TableMod)
    assert {(f.match, f.actions) for f in mod.add} == {
        ((("in_port", 4),), (("push_vlan", 0x8100), ("set_field", "vlan_vid", 0x1001), ("output", 9))),
        ((("in_port", 9), ("vlan_vid", 0x1001)), (("pop_vlan",), ("output", 4))),
    }


def test_a_link_between_two_virtual_plane_vms_wires_their_nics_on_the_rfvs():
    vm = {"engine": "none", "routing_plane": "virtual"}
    config = parse_config({"vms": [
        {**vm, "name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}, {"name": "eth3", "port": 3}]},
        {**vm, "name": "rB", "dpid": 2, "interfaces": [{"name": "eth2", "port": 2}]},
        {"name": "rC", "dpid": 3, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]},
    ], "discovery": {"interval": 0.25}})
    core = ServerCore(config)
    assert DiscoveryPlan((1, 2), 0.25) in messages(core.on_controller_up(), DiscoveryPlan)
    (dump,) = messages(core.on_datapath_join(DatapathJoin(RFVS, ())), DumpTable)
    core.on_table_dump(TableDump(dump.request_id, RFVS, (), ()))
    core.reconcile()
    for port, (vm_name, ifname) in enumerate([("rA", "eth3"), ("rB", "eth2"), ("rC", "eth1")], start=11):
        core.on_mapping_seen(MappingSeen(RFVS, port, vm_name, ifname))
    core.reconcile()
    # One direction is not a link yet; both are.
    core.on_link_change(LinkChange(1, 3, 2, 2, True))
    assert core.nib.virtual_links() == [] and not core.has_dirty
    core.on_link_change(LinkChange(2, 2, 1, 3, True))
    (mod,) = messages(core.reconcile(), TableMod)
    assert {(f.match, f.actions) for f in mod.add} == {
        ((("in_port", 11),), (("output", 12),)), ((("in_port", 12),), (("output", 11),))}
    # A link to a physical-plane VM is never wired; losing the link unwires.
    core.on_link_change(LinkChange(3, 1, 1, 1, True))
    core.on_link_change(LinkChange(1, 1, 3, 1, True))
    assert core.nib.virtual_links() == [(("rA", "eth3"), ("rB", "eth2"))]
    core.on_link_change(LinkChange(2, 2, 1, 3, False))
    (mod,) = messages(core.reconcile(), TableMod)
    assert len(mod.delete) == 2 and not mod.add


def test_unresolved_next_hops_are_resolved_again_with_back_off():
    core, _ = joined_core()
    core.on_client_up("rA")
    core.on_fib_snapshot("rA", FibSnapshot(Fib(FIB.interfaces, FIB.routes + (
        Route("198.51.100.0/24", (NextHop("eth2", "172.31.2.99"),)),), FIB.neighbours)))
    core.reconcile()
    asked = [t for t in range(0, 40) for _ in messages(core.resolve_due(float(t)), ResolveNextHops, "rA")]
    assert asked == [0, 1, 3, 7, 15, 31]  # 1, 2, 4, 8, 16 s apart
    retry = core.nib.resolving["rA"][("eth2", "172.31.2.99")]
    assert retry.attempts == 6
    # The neighbour answers: no more attempts, and none remembered.
    core.on_fib_delta("rA", FibDelta(neighbours_set=(Neighbour("eth2", "172.31.2.99", "0a:00:00:00:00:99"),)))
    core.reconcile()
    assert messages(core.resolve_due(100.0), ResolveNextHops) == [] and core.nib.resolving["rA"] == {}


def test_fib_audit_reports_show_in_status_and_change_no_flow(caplog):
    core, _ = joined_core()
    core.on_fib_snapshot("rA", FibSnapshot(FIB))
    core.reconcile()
    (vm,) = status_document(core.nib)["vms"]
    assert (vm["fib_audits"], vm["fib_repaired"], vm["fib_last_repair"]) == (0, 0, "")
    assert core.on_fib_audit("rA", FibAudit(audits=3, repaired=0)) == [] and not caplog.records
    core.on_fib_audit("rA", FibAudit(audits=4, repaired=2, last_repair="2026-12-03T15:00:00Z"))
    assert "repaired 2 route(s)" in caplog.text
    (vm,) = status_document(core.nib)["vms"]
    assert (vm["fib_audits"], vm["fib_repaired"], vm["fib_last_repair"]) == (4, 2, "2026-12-03T15:00:00Z")
    assert core.reconcile() == []  # the repair itself came as a delta; the report changes nothing


TWO_VMS = parse_config({
    "vms": [{"name": name, "dpid": dpid, "engine": "none", "interfaces": [
        {"name": "eth1", "port": 1, "addresses": [f"172.31.{dpid}.1/24"]},
    ]} for name, dpid in (("rA", 1), ("rB", 2))],
})


def test_a_datapath_whose_table_cannot_be_computed_keeps_its_last_one_and_stops_no_other(caplog):
    core = ServerCore(TWO_VMS)
    core.on_controller_up()
    for dpid in (1, 2):
        (dump,) = messages(core.on_datapath_join(DatapathJoin(dpid, PORTS)), DumpTable)
        core.on_table_dump(TableDump(dump.request_id, dpid, (), ()))
    good = {dpid: Fib((Interface("eth1", "02:00:00:00:00:01", True, (f"172.31.{dpid}.1/24",)),),
                      (Route(f"172.31.{dpid}.0/24", (NextHop("eth1"),)),)) for dpid in (1, 2)}
    core.on_fib_snapshot("rA", FibSnapshot(good[1]))
    core.on_fib_snapshot("rB", FibSnapshot(good[2]))
    core.reconcile()
    installed = dict(core.nib.datapaths[1].installed.flows)
    # A value no decoder would let in, as if it had: rA's table cannot be computed...
    broken = Fib((Interface("eth1", "02:00:00:00:00:01", True, ("garbage",)),), good[1].routes)
    core.on_fib_snapshot("rA", FibSnapshot(broken))
    core.on_fib_delta("rB", FibDelta(routes_set=(Route("10.9.0.0/16", (NextHop("eth1"),)),)))
    out = core.reconcile()
    # ... but rB's change still goes out, and rA's switch keeps its last good table.
    assert [mod.dpid for mod in messages(out, TableMod)] == [2]
    assert core.nib.datapaths[1].installed.flows == installed
    assert "garbage" in core.nib.datapaths[1].compile_error and "flows not updated" in caplog.text
    (dp,) = [d for d in status_document(core.nib)["datapaths"] if d["dpid"] == "0x1"]
    assert "garbage" in dp["compile_error"]
    # The same failure again is not logged again; a good FIB heals it.
    caplog.clear()
    core.on_fib_snapshot("rA", FibSnapshot(broken))
    assert not messages(core.reconcile(), TableMod) and not caplog.records
    core.on_fib_snapshot("rA", FibSnapshot(good[1]))
    core.reconcile()
    assert core.nib.datapaths[1].compile_error == ""
