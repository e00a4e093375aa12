"""VMs for discovered switches: templates, admission policy, pools, rejects, grace."""

import pytest
from tests.fakeswitch import FakeSwitch
from tests.problems import problems as config_problems

from routeflow.config.loader import parse_config
from routeflow.config.templates import pool_size, vm_from_template
from routeflow.model import PortDesc
from routeflow.protocol.messages import (
    Admission,
    DatapathJoin,
    DatapathLeave,
    DumpTable,
    PortChange,
    RelayMap,
    TableDump,
    TableMod,
)
from routeflow.server.admission import Admissions
from routeflow.server.core import TABLE_MISS_DROP, ServerCore
from routeflow.server.core_vms import CONTROLLER, VNET, VmChange
from routeflow.server.status import status_document

FRR_TEMPLATE = {
    "name": "edge", "admit": [0x10, 0x11, 0x12], "router_ids": "10.255.1.0/30", "daemons": ["ospfd"],
    "host_port": 1, "host_subnets": "10.1.0.0/16",
    "nic_config": "interface $ifname\n ip ospf network point-to-point\n",
    "engine_config": "${interfaces}" "router ospf\n ospf router-id $router_id\n network $host_subnet area 0\n"
                     " network 10.255.1.0/24 area 0\n",
    "grace": 5,
}
CONFIG = parse_config({"templates": [FRR_TEMPLATE]})


def problems(document: object) -> dict[str, str]:
    return config_problems(parse_config, document, "cfg.yaml")


def ports(*numbers: int, down: tuple[int, ...] = ()) -> tuple[PortDesc, ...]:
    return tuple(PortDesc(n, f"s-eth{n}", f"aa:00:00:00:00:{n:02x}", n not in down) for n in numbers)


def test_a_vm_from_a_template_has_a_nic_per_port_up_unnumbered_but_the_host_port():
    vm = vm_from_template(CONFIG.templates[0], 2, 0x10, (1, 2, 3))
    assert vm.name == "edge2" and vm.dpid == 0x10 and vm.loopback == ("10.255.1.2/32",)
    assert [(n.name, n.port, n.addresses) for n in vm.interfaces] == [
        ("eth1", 1, ("10.1.2.1/24",)), ("eth2", 2, ("10.255.1.2/32",)), ("eth3", 3, ("10.255.1.2/32",))]
    assert vm.engine_config == ("interface eth2\n ip ospf network point-to-point\n"
                                "interface eth3\n ip ospf network point-to-point\n"
                                "router ospf\n ospf router-id 10.255.1.2\n network 10.1.2.0/24 area 0\n"
                                " network 10.255.1.0/24 area 0\n")
    assert vm.daemons == ("ospfd",)


def test_the_pool_decides_how_many_and_the_lowest_free_index_is_taken_again():
    book = Admissions(CONFIG.templates)
    assert pool_size(CONFIG.templates[0]) == 2  # a /30 of router ids: two hosts
    first, second, third = (book.decide(d, ports(1, 2)) for d in (0x10, 0x11, 0x12))
    assert (first.vm.name, second.vm.name) == ("edge1", "edge2")
    assert not third.admitted and "exhausted" in third.reason and "edge" in third.reason
    book.release(0x10)
    assert book.decide(0x12, ports(1)).vm.name == "edge1"
    assert (book.admitted_count, book.rejected_count) == (3, 1)


def test_a_switch_no_template_admits_is_rejected():
    book = Admissions(CONFIG.templates)
    decision = book.decide(0x99, ports(1))
    assert not decision.admitted and decision.reason == "no template admits it"


def test_templates_are_checked_where_they_are_written():
    bad = dict(FRR_TEMPLATE, engine_config="router ospf\n ospf router-id $routerid\n", host_subnets=None,
               admit=["zz"], name="toolong")
    found = problems({"templates": [bad]})
    assert found["templates[0].engine_config"].startswith("$routerid is no placeholder")
    assert found["templates[0].host_subnets"].startswith("host_port and host_subnets go together")
    assert "is not a datapath id" in found["templates[0].admit[0]"]
    assert "at most 4" in found["templates[0].name"]
    found = problems({"templates": [dict(FRR_TEMPLATE, nic_config="interface $name\n")]})
    assert found["templates[0].nic_config"].startswith("$name is no placeholder: the placeholders are $ifname")
    found = problems({"templates": [dict(FRR_TEMPLATE, router_ids="10.255.1.1/24")]})
    assert "is not an IPv4 network" in found["templates[0].router_ids"]


def joined(core: ServerCore, dpid: int, *numbers: int) -> tuple[list, FakeSwitch]:
    switch = FakeSwitch(dpid, {p.port_no: p for p in ports(*numbers)})
    out = core.on_datapath_join(DatapathJoin(dpid, tuple(switch.ports.values())))
    (dump,) = [o.msg for o in out if isinstance(o.msg, DumpTable)]
    core.on_table_dump(TableDump(dump.request_id, dpid, (), ()))
    return out, switch


def test_the_core_makes_a_vm_for_an_admitted_switch_and_retires_it_after_the_grace_period():
    core = ServerCore(CONFIG)
    core.on_controller_up()
    out, _ = joined(core, 0x10, 1, 2)
    (decision,) = [o.msg for o in out if isinstance(o.msg, Admission)]
    (change,) = [o.msg for o in out if o.to == VNET]
    assert decision == Admission(0x10, True, "edge1", "edge")
    assert isinstance(change, VmChange) and change.kind == "add" and change.vm.name == "edge1"
    assert [vm.name for vm in core.config.vms_of_dpid(0x10)] == ["edge1"] and "edge1" in core.nib.vms
    assert status_document(core.nib)["admissions"] == {"admitted": 1, "rejected": 0}
    # the switch leaves; back within the grace period, it finds its VM
    core.on_datapath_leave(DatapathLeave(0x10), now=100.0)
    assert core.retire_due(104.0) == []
    joined(core, 0x10, 1, 2)
    assert core.retire_due(200.0) == [] and core.config.vm("edge1") is not None
    # gone for longer than the grace period: the VM goes, and its index is free again
    core.on_datapath_leave(DatapathLeave(0x10), now=300.0)
    out = core.retire_due(305.0)
    assert [(o.to, o.msg.kind, o.msg.vm.name) for o in out if o.to == VNET] == [(VNET, "remove", "edge1")]
    assert any(isinstance(o.msg, RelayMap) for o in out)
    assert core.config.vm("edge1") is None and "edge1" not in core.nib.vms
    assert core.nib.admissions.decide(0x11, ports(1)).vm.name == "edge1"


def test_a_rejected_switch_holds_nothing_but_the_table_miss_drop():
    core = ServerCore(CONFIG)
    core.on_controller_up()
    out, switch = joined(core, 0x99, 1, 2)
    (decision,) = [o.msg for o in out if isinstance(o.msg, Admission)]
    assert not decision.admitted and decision.reason == "no template admits it"
    assert not [o for o in out if o.to == VNET]
    for item in core.reconcile():
        assert isinstance(item.msg, TableMod) and item.to == CONTROLLER
        switch.apply(item.msg)
    assert list(switch.flows.values()) == [TABLE_MISS_DROP]
    dp = next(d for d in status_document(core.nib)["datapaths"] if d["dpid"] == "0x99")
    assert dp["admission"] == {"admitted": False, "vm": None, "template": None,
                               "reason": "no template admits it", "leaving": False}
    # it leaves and comes back: judged again, as the policy stands
    core.on_datapath_leave(DatapathLeave(0x99))
    out, _ = joined(core, 0x99, 1)
    assert [o.msg.admitted for o in out if isinstance(o.msg, Admission)] == [False]
    assert status_document(core.nib)["admissions"] == {"admitted": 0, "rejected": 2}


@pytest.mark.parametrize("admit", ["all", [0x10]])
def test_configured_vms_are_never_judged(admit):
    config = parse_config({"vms": [{"name": "rA", "dpid": 0x10, "engine": "none",
                                    "interfaces": [{"name": "eth1", "port": 1}]}],
                           "templates": [dict(FRR_TEMPLATE, admit=admit)]})
    core = ServerCore(config)
    core.on_controller_up()
    out, _ = joined(core, 0x10, 1)
    assert not [o for o in out if isinstance(o.msg, Admission)]


def test_a_switch_gets_its_datapath_id_as_index_where_the_pool_reaches():
    template = parse_config({"templates": [dict(FRR_TEMPLATE, router_ids="10.255.1.0/24", admit="all")]}).templates
    book = Admissions(template)
    assert [book.decide(d, ports(1)).vm.name for d in (3, 1, 0x1000, 2)] == ["edge3", "edge1", "edge2", "edge4"]
    assert book.decisions[3].vm.interfaces[0].addresses == ("10.1.3.1/24",)


def test_a_port_that_comes_up_on_an_admitted_switch_gets_a_nic():
    core = ServerCore(CONFIG)
    core.on_controller_up()
    joined(core, 0x10, 1, 2)  # port 3 is not there yet
    assert [n.name for n in core.config.vm("edge1").interfaces] == ["eth1", "eth2"]
    out = core.on_port_change(PortChange(0x10, ports(3)[0]))
    (change,) = [o.msg for o in out if o.to == VNET]
    assert change.kind == "update" and [n.name for n in change.vm.interfaces] == ["eth1", "eth2", "eth3"]
    assert change.vm.interfaces[2].addresses == ("10.255.1.1/32",)
    assert "interface eth3\n ip ospf network point-to-point" in change.vm.engine_config
    assert core.config.vm("edge1") == change.vm
    # the same port down and up again: nothing more to make
    core.on_port_change(PortChange(0x10, ports(3, down=(3,))[0]))
    assert not [o for o in core.on_port_change(PortChange(0x10, ports(3)[0])) if o.to == VNET]


def test_a_restarted_server_takes_the_vms_its_predecessor_made_as_they_were():
    first = ServerCore(CONFIG)
    first.on_controller_up()
    joined(first, 0x11, 1, 2, 3)
    made = first.config.vm("edge1")
    later = ServerCore(CONFIG)
    taken = later.readmit({"edge1": (0x11, (1, 2, 3)), "edge9": (0x12, (1,)), "other1": (0x10, (1,))}, now=50.0)
    assert taken == ["edge1"]  # edge9 is past the pool, other1 no template's
    assert later.config.vm("edge1") == made  # the same config: the virtual environment adopts it
    assert later.nib.admissions.leaving == {"edge1": 55.0}
    later.on_controller_up()
    out, _ = joined(later, 0x11, 1, 2, 3)  # its switch is back: no new decision, the VM stays
    assert not [o for o in out if isinstance(o.msg, Admission)] and later.nib.admissions.leaving == {}
    assert later.retire_due(100.0) == []
