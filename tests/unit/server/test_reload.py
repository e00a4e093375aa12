"""A configuration reload in the server core: only what differs is applied, the datapaths
it does not touch are sent nothing, and a config it cannot take changes nothing."""

import dataclasses

import pytest

from routeflow.config.diff import diff_configs
from routeflow.config.loader import parse_config
from routeflow.errors import ConfigError
from routeflow.model import Fib, Interface, NextHop, PortDesc, Route
from routeflow.protocol.messages import (
    DatapathJoin,
    DumpTable,
    FibSnapshot,
    LinkState,
    MappingSeen,
    RelayMap,
    TableDump,
    TableMod,
)
from routeflow.server.core import ServerCore
from routeflow.server.core_vms import VNET, VmChange


def vm(name, dpid, *, interfaces=None, engine_config="", engine="none", daemons=()):
    return {"name": name, "dpid": dpid, "engine": engine, "daemons": list(daemons), "engine_config": engine_config,
            "interfaces": interfaces or [{"name": "eth1", "port": 1, "addresses": [f"10.{dpid}.1.1/24"]},
                                         {"name": "eth2", "port": 2, "addresses": [f"10.{dpid}.2.1/24"]}]}


def config(*vms, **top):
    return parse_config({"vms": list(vms), **top}, "routeflow.yaml")


BASE = config(vm("rA", 1), vm("rB", 2))
PORTS = tuple(PortDesc(p, f"s-eth{p}", f"aa:00:00:00:00:0{p}", True) for p in (1, 2, 3))


def fib(dpid, ports=(1, 2)):
    return Fib(tuple(Interface(f"eth{p}", f"02:00:00:00:0{dpid}:0{p}", True, (f"10.{dpid}.{p}.1/24",)) for p in ports),
               tuple(Route(f"10.{dpid}.{p}.0/24", (NextHop(f"eth{p}"),)) for p in ports), ())


def running(cfg=BASE):
    """A core whose VMs have reported and whose datapaths hold their tables."""
    core = ServerCore(cfg)
    core.on_controller_up()
    for dpid in (1, 2, cfg.rfvs.dpid):
        out = core.on_datapath_join(DatapathJoin(dpid, PORTS))
        (dump,) = [o.msg for o in out if isinstance(o.msg, DumpTable)]
        core.on_table_dump(TableDump(dump.request_id, dpid, (), ()))
    for n, name in enumerate((v.name for v in cfg.vms), start=1):
        core.on_fib_snapshot(name, FibSnapshot(fib(n)))
        for port, ifname in enumerate(("eth1", "eth2"), start=1):
            core.on_mapping_seen(MappingSeen(cfg.rfvs.dpid, n * 10 + port, name, ifname))
    core.reconcile()
    return core


def table_mods(out):
    return {o.msg.dpid: o.msg for o in out if isinstance(o.msg, TableMod)}


def vm_changes(out):
    return [(o.msg.kind, o.msg.vm.name) for o in out if o.to == VNET and isinstance(o.msg, VmChange)]


def test_the_same_file_changes_nothing():
    core = running()
    diff, out = core.reload(BASE)
    assert diff.empty and out == []
    assert core.reconcile() == []


def test_an_engine_config_change_updates_that_vm_and_sends_no_flow():
    core = running()
    new = config(vm("rA", 1, engine_config="interface eth1\n ip ospf cost 100\n"), vm("rB", 2))
    diff, out = core.reload(new)
    assert diff.describe() == ["VM rA: engine config"]
    assert vm_changes(out) == [("update", "rA")]
    assert table_mods(core.reconcile()) == {}
    assert core.config.vm("rA").engine_config.startswith("interface eth1")


def test_a_nic_added_touches_only_its_datapath():
    core = running()
    nics = [{"name": "eth1", "port": 1, "addresses": ["10.1.1.1/24"]},
            {"name": "eth2", "port": 2, "addresses": ["10.1.2.1/24"]},
            {"name": "eth3", "port": 3, "addresses": ["10.1.3.1/24"]}]
    _, out = core.reload(config(vm("rA", 1, interfaces=nics), vm("rB", 2)))
    assert vm_changes(out) == [("update", "rA")]
    assert LinkState("eth3", True) in [o.msg for o in out if o.to == "rA"]
    # The client reports the new NIC with its address: the flows for it go to datapath 1 only.
    core.on_fib_snapshot("rA", FibSnapshot(fib(1, (1, 2, 3))))
    mods = table_mods(core.reconcile())
    assert set(mods) <= {1, core.config.rfvs.dpid} and mods[1].add and not mods[1].delete
    assert any(("ipv4_dst", "10.1.3.0/24") in f.match for f in mods[1].add if f.match)


def test_a_nic_removed_leaves_the_slow_path_and_its_flows_go():
    core = running()
    _, out = core.reload(config(vm("rA", 1, interfaces=[{"name": "eth1", "port": 1, "addresses": ["10.1.1.1/24"]}]),
                                vm("rB", 2)))
    (relay,) = [o.msg for o in out if isinstance(o.msg, RelayMap)]
    assert (1, 2) not in {(e.dpid, e.port) for e in relay.entries}
    assert ("rA", "eth2") not in core.nib.rfvs_ports
    core.on_fib_snapshot("rA", FibSnapshot(fib(1, (1,))))
    mods = table_mods(core.reconcile())
    assert 2 not in mods and mods[1].delete and not mods[1].add


def test_a_vm_removed_leaves_its_datapath_empty_and_the_others_untouched():
    core = running()
    _, out = core.reload(config(vm("rB", 2)))
    assert vm_changes(out) == [("remove", "rA")]
    assert "rA" not in core.nib.vms and core.config.vm("rA") is None
    mods = table_mods(core.reconcile())
    assert 2 not in mods
    assert core.nib.datapaths[1].installed.flows == {} and mods[1].delete


def test_a_vm_added_is_made_and_gets_flows_once_it_reports():
    core = running(config(vm("rA", 1)))
    _, out = core.reload(config(vm("rA", 1), vm("rB", 2)))
    assert vm_changes(out) == [("add", "rB")]
    assert table_mods(core.reconcile()) == {}  # rB has not reported yet
    core.on_fib_snapshot("rB", FibSnapshot(fib(2)))
    assert set(table_mods(core.reconcile())) == {2}


def test_a_new_engine_makes_the_vm_again():
    core = running()
    _, out = core.reload(config(vm("rA", 1, engine="bird", engine_config="router id 10.255.0.1;\n"
                                                                          "protocol device { }\n"
                                                                          "protocol kernel { ipv4 { export all; }; }\n"),
                                vm("rB", 2)))
    assert vm_changes(out) == [("remove", "rA"), ("add", "rA")]
    assert not core.nib.vms["rA"].synced  # until its new client reports, datapath 1 keeps its flows
    assert table_mods(core.reconcile()) == {}


def test_a_key_a_running_server_cannot_change_refuses_the_whole_file():
    core = running()
    before = core.config
    new = dataclasses.replace(config(vm("rA", 1), vm("rB", 2, engine_config="x"), listen=["unix:/run/other.sock"]))
    with pytest.raises(ConfigError) as caught:
        core.reload(new)
    assert caught.value.problems == [("listen", "cannot change while the server runs: restart it")]
    assert core.config is before
    assert str(caught.value).startswith("routeflow.yaml: listen: ")


def test_limits_and_discovery_interval_are_taken():
    core = running()
    diff, _ = core.reload(config(vm("rA", 1), vm("rB", 2), discovery={"interval": 2.0}, limits={"keepalive": 7}))
    assert diff.settings == ("discovery_interval", "limits") and not diff.restart
    assert core.config.discovery_interval == 2.0 and core.config.limits.keepalive == 7


TEMPLATE = {"name": "edge", "admit": "all", "router_ids": "10.255.1.0/24", "daemons": ["ospfd"],
            "engine_config": "router ospf\n"}


def test_a_vm_made_for_a_joining_switch_stays_and_cannot_be_configured_twice():
    cfg = config(vm("rA", 1), templates=[TEMPLATE])
    core = ServerCore(cfg)
    core.on_controller_up()
    core.on_datapath_join(DatapathJoin(5, PORTS))
    assert core.config.vm("edge5") is not None
    diff, _ = core.reload(config(vm("rA", 1, engine_config="x"), templates=[TEMPLATE]))
    assert core.config.vm("edge5") is not None and not diff.removed
    with pytest.raises(ConfigError) as caught:
        core.reload(config(vm("rA", 1), vm("sw5", 5), templates=[TEMPLATE]))
    assert "mirrored by VM edge5" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        core.reload(config(vm("rA", 1), templates=[{**TEMPLATE, "router_ids": "10.255.2.0/24"}]))
    assert "template edge has VMs running (edge5)" in str(caught.value)


def test_the_diff_says_what_changed_of_each_vm():
    new = config(vm("rA", 1, interfaces=[{"name": "eth1", "port": 1, "addresses": ["10.1.9.1/24"]},
                                        {"name": "eth3", "port": 3}]), vm("rC", 3))
    diff = diff_configs(BASE, new)
    assert diff.describe() == ["VM rC added (datapath 0x3)", "VM rB removed (datapath 0x2)",
                               "VM rA: NICs added eth3; NICs removed eth2; NICs changed eth1"]
    (change,) = diff.changed
    # NICs added or removed, addresses: the VM's client reports them as its kernel takes them.
    assert not change.remapped and not change.replaced


def test_a_nic_moved_to_another_port_is_remapped_without_its_client():
    core = running()
    nics = [{"name": "eth1", "port": 1, "addresses": ["10.1.1.1/24"]},
            {"name": "eth2", "port": 3, "addresses": ["10.1.2.1/24"]}]
    diff, out = core.reload(config(vm("rA", 1, interfaces=nics), vm("rB", 2)))
    assert diff.changed[0].remapped
    (relay,) = [o.msg for o in out if isinstance(o.msg, RelayMap)]
    assert (1, 3) in {(e.dpid, e.port) for e in relay.entries} and (1, 2) not in {(e.dpid, e.port) for e in relay.entries}
    mods = table_mods(core.reconcile())
    assert 2 not in mods and mods[1].add and mods[1].delete  # port 2's flows become port 3's
