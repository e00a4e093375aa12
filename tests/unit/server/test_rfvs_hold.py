"""The RFVS keeps the flows it held while a restarted server or controller learns
again what they are for: no slow path is cut for the moment that takes."""

import logging

from routeflow.config.loader import parse_config
from routeflow.flows.compiler import compile_rfvs
from routeflow.model import PortDesc
from routeflow.protocol.messages import DatapathJoin, DumpTable, LinkChange, MappingSeen, TableDump, TableMod
from routeflow.server.core import RFVS_HOLD_MAX, RFVS_HOLD_PROBES, ServerCore

TRUNKED = parse_config({"vms": [{"name": "rA", "dpid": 1, "engine": "none", "trunk": {"port": 100},
                                 "interfaces": [{"name": "eth1", "port": 1}, {"name": "eth2", "port": 2}]}]})
TRUNK = PortDesc(9, "rft1-rf", "aa:00:00:00:00:09", True)
NICS = {("rA", "eth1"): 4, ("rA", "eth2"): 5}

VIRTUAL = parse_config({"vms": [
    {"engine": "none", "routing_plane": "virtual", "name": "rA", "dpid": 1, "interfaces": [{"name": "eth3", "port": 3}]},
    {"engine": "none", "routing_plane": "virtual", "name": "rB", "dpid": 2, "interfaces": [{"name": "eth2", "port": 2}]},
], "discovery": {"interval": 0.5}})


def table_mods(out):
    return [o.msg for o in out if isinstance(o.msg, TableMod)]


def rfvs_up(core: ServerCore, config, ports, flows) -> None:
    """The controller comes up and the RFVS joins holding ``flows`` (a previous life's)."""
    core.on_controller_up()
    (dump,) = [o.msg for o in core.on_datapath_join(DatapathJoin(config.rfvs.dpid, ports)) if isinstance(o.msg, DumpTable)]
    core.on_table_dump(TableDump(dump.request_id, config.rfvs.dpid, tuple(flows), ()))


def previous_life(config, nics, ports, wires=()):
    return list(compile_rfvs(config, nics, {p.port_no: p for p in ports}, wires).flows.values())


def test_a_restarted_server_rewrites_no_rfvs_flow_while_the_nics_map_again():
    core = ServerCore(TRUNKED)
    rfvs_up(core, TRUNKED, (TRUNK,), previous_life(TRUNKED, NICS, (TRUNK,)))
    # Nothing is mapped yet: the trunk flows of both NICs stay.
    assert table_mods(core.reconcile()) == []
    core.settle_due(0.0)
    core.on_mapping_seen(MappingSeen(TRUNKED.rfvs.dpid, 4, "rA", "eth1"))
    assert table_mods(core.reconcile()) == [] and not core.rfvs_settled
    core.on_mapping_seen(MappingSeen(TRUNKED.rfvs.dpid, 5, "rA", "eth2"))
    # Every NIC is accounted for: the hold ends, and the table was right all along.
    assert core.rfvs_settled
    assert table_mods(core.reconcile()) == []


def test_the_flows_of_a_nic_that_never_maps_again_go_when_the_hold_ends(caplog):
    core = ServerCore(TRUNKED)
    rfvs_up(core, TRUNKED, (TRUNK,), previous_life(TRUNKED, NICS, (TRUNK,)))
    core.settle_due(100.0)
    core.on_mapping_seen(MappingSeen(TRUNKED.rfvs.dpid, 4, "rA", "eth1"))
    assert table_mods(core.reconcile()) == []
    core.settle_due(100.0 + RFVS_HOLD_MAX - 0.5)
    assert not core.rfvs_settled and table_mods(core.reconcile()) == []
    with caplog.at_level(logging.WARNING, "routeflow.server"):
        core.settle_due(100.0 + RFVS_HOLD_MAX)
    assert "no mapping packet after 10 s from rA eth2" in caplog.text
    (mod,) = table_mods(core.reconcile())
    assert not mod.add and not mod.modify
    assert {dict(f.match).get("in_port") for f in mod.delete} == {5, 9}  # eth2's two trunk flows


def test_a_moved_nic_gets_its_new_flows_at_once_and_loses_the_old_at_the_end_of_the_hold():
    core = ServerCore(TRUNKED)
    rfvs_up(core, TRUNKED, (TRUNK,), previous_life(TRUNKED, NICS, (TRUNK,)))
    core.on_mapping_seen(MappingSeen(TRUNKED.rfvs.dpid, 6, "rA", "eth1"))  # recreated: another RFVS port
    (mod,) = table_mods(core.reconcile())
    assert {dict(f.match)["in_port"] for f in mod.add} == {6} and not mod.delete
    # The trunk's flow for eth1's tag now outputs to port 6: a change, not a held stale flow.
    assert [dict(f.match).get("vlan_vid") for f in mod.modify] == [0x1001]
    core.on_mapping_seen(MappingSeen(TRUNKED.rfvs.dpid, 5, "rA", "eth2"))
    (mod,) = table_mods(core.reconcile())
    assert [dict(f.match)["in_port"] for f in mod.delete] == [4] and not mod.add


def test_wires_are_held_until_discovery_had_its_probes_then_kept_if_found_again():
    wires = [(11, 12)]
    nics = {("rA", "eth3"): 11, ("rB", "eth2"): 12}
    core = ServerCore(VIRTUAL)
    rfvs_up(core, VIRTUAL, (), previous_life(VIRTUAL, nics, (), wires))
    core.settle_due(0.0)
    core.on_mapping_seen(MappingSeen(VIRTUAL.rfvs.dpid, 11, "rA", "eth3"))
    core.on_mapping_seen(MappingSeen(VIRTUAL.rfvs.dpid, 12, "rB", "eth2"))
    assert not core.rfvs_settled and table_mods(core.reconcile()) == []
    core.on_link_change(LinkChange(1, 3, 2, 2, True))
    core.on_link_change(LinkChange(2, 2, 1, 3, True))
    core.settle_due(RFVS_HOLD_PROBES * 0.5)
    assert core.rfvs_settled and table_mods(core.reconcile()) == []


def test_a_controller_restart_holds_wires_not_yet_rediscovered():
    core = ServerCore(VIRTUAL)
    rfvs_up(core, VIRTUAL, (), [])
    core.settle_due(0.0)
    core.on_mapping_seen(MappingSeen(VIRTUAL.rfvs.dpid, 11, "rA", "eth3"))
    core.on_mapping_seen(MappingSeen(VIRTUAL.rfvs.dpid, 12, "rB", "eth2"))
    core.on_link_change(LinkChange(1, 3, 2, 2, True))
    core.on_link_change(LinkChange(2, 2, 1, 3, True))
    core.settle_due(RFVS_HOLD_PROBES * 0.5)
    (mod,) = table_mods(core.reconcile())
    installed = list(core.nib.datapaths[VIRTUAL.rfvs.dpid].installed.flows.values())
    assert len(mod.add) == 4  # relay, mapping, and the wire's two directions
    # The controller restarts: links are forgotten until discovery finds them again.
    core.on_controller_down()
    rfvs_up(core, VIRTUAL, (), installed)
    core.settle_due(10.0)
    assert table_mods(core.reconcile()) == []
    core.settle_due(10.0 + RFVS_HOLD_PROBES * 0.5)
    (mod,) = table_mods(core.reconcile())
    assert len(mod.delete) == 2 and not mod.add  # not found again: the wire goes


def test_a_link_lost_while_the_hold_lasts_unwires_what_this_server_wired():
    core = ServerCore(VIRTUAL)
    rfvs_up(core, VIRTUAL, (), [])
    core.settle_due(0.0)
    core.on_mapping_seen(MappingSeen(VIRTUAL.rfvs.dpid, 11, "rA", "eth3"))
    core.on_mapping_seen(MappingSeen(VIRTUAL.rfvs.dpid, 12, "rB", "eth2"))
    core.on_link_change(LinkChange(1, 3, 2, 2, True))
    core.on_link_change(LinkChange(2, 2, 1, 3, True))
    core.reconcile()
    assert not core.rfvs_settled
    core.on_link_change(LinkChange(2, 2, 1, 3, False))
    (mod,) = table_mods(core.reconcile())
    assert len(mod.delete) == 2 and not mod.add
