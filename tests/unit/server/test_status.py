"""The status document's pieces: FIB drift, and what verify expects a switch to hold."""

import pytest
from tests.datapath import CONFIG, CONNECTED, IFACES, MAC2, NEIGHBOURS, VM, ip_packet, ports
from tests.fakecontroller import FakeController
from tests.fakeswitch import FakeSwitch

from routeflow.flows.diff import TableComparison
from routeflow.model import Fib, Flow, Interface, Neighbour, NextHop, PortDesc, Route
from routeflow.protocol.messages import FibSnapshot, MappingSeen, TableMod
from routeflow.server.core import ServerCore
from routeflow.server.nib import VmState
from routeflow.server.status import expect_table, fib_drift

R1 = Route("10.0.0.0/24", (NextHop("eth1", "172.31.1.2"),))
R2 = Route("10.0.1.0/24", (NextHop("eth1", "172.31.1.2"),))
R2B = Route("10.0.1.0/24", (NextHop("eth1", "172.31.1.3"),))
IF = Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",))
N = Neighbour("eth1", "172.31.1.2", "0a:00:00:00:00:01")


def test_no_drift_when_equal():
    state = VmState()
    state.replace(Fib((IF,), (R1, R2), (N,)))
    assert fib_drift("rA", state, Fib((IF,), (R2, R1), (N,))) == []


def test_lacking_stale_and_changed_entries_are_named():
    state = VmState()
    state.replace(Fib((IF,), (R1, R2), (N,)))
    lines = fib_drift("rA", state, Fib((IF,), (R2B,), ()))
    text = "\n".join(lines)
    assert "lacks route Route(prefix='10.0.1.0/24'" in text and "172.31.1.3" in text
    assert "stale route Route(prefix='10.0.1.0/24'" in text
    assert "stale route Route(prefix='10.0.0.0/24'" in text
    assert "stale neighbour" in text
    assert len(lines) == 4


# -- what verify expects a switch to hold ----------------------------------------------

#: rA with a multipath route (a group) and its NIC eth1 seen on the RFVS.
ECMP = Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"), NextHop("eth3", "10.0.3.2")), proto="ospf")
ECMP_FIB = Fib(IFACES, CONNECTED + (ECMP,), NEIGHBOURS)
RFVS = CONFIG.rfvs.dpid


def programmed() -> tuple[ServerCore, dict[int, FakeSwitch]]:
    """A core that has programmed rA's switch and the RFVS, as a verify finds them."""
    core = ServerCore(CONFIG)
    switches = {VM.dpid: FakeSwitch(VM.dpid, ports()),
                RFVS: FakeSwitch(RFVS, {7: PortDesc(7, "rA-eth1", "aa:00:00:00:01:07", True)})}
    controller = FakeController(core, *switches.values())
    controller.connect()
    controller.run(core.on_client_up("rA"))
    controller.run(core.on_fib_snapshot("rA", FibSnapshot(ECMP_FIB)))
    controller.run(core.on_mapping_seen(MappingSeen(RFVS, 7, "rA", "eth1")))
    return core, switches


def verify(core: ServerCore, switch: FakeSwitch, fib: Fib | None, pivot: bool = True) -> list[str]:
    """What a verify of ``switch`` against ``fib`` reports (the RFVS: against its relay table)."""
    comparison = TableComparison(core.nib.datapaths[switch.dpid].installed if pivot else None)
    assert expect_table(comparison, core.nib, switch.dpid, [fib], switch.ports)
    return comparison.feed(switch.flows.values(), switch.groups.values()).lines("rA")


@pytest.mark.parametrize("pivot", [True, False], ids=["pivot", "no-pivot"])
def test_a_switch_that_holds_what_the_core_programmed_verifies_clean(pivot):
    core, switches = programmed()
    assert switches[VM.dpid].groups and len(switches[RFVS].flows) >= 2  # something to check
    assert verify(core, switches[VM.dpid], ECMP_FIB, pivot) == []
    assert verify(core, switches[RFVS], None, pivot) == []


@pytest.mark.parametrize("pivot", [True, False], ids=["pivot", "no-pivot"])
def test_verify_names_what_a_switch_lost_holds_wrongly_or_holds_in_excess(pivot):
    core, switches = programmed()
    switch = switches[VM.dpid]
    to_remote = ip_packet("172.31.4.7")
    route = switch.forward(to_remote).entries[-1]
    host = switch.forward(ip_packet("172.31.1.100", in_port=2, eth_dst=MAC2)).entries[-1]
    stray = Flow(route.table, route.priority, (("eth_type", 0x0800), ("ipv4_dst", "198.51.100.0/24")), (("output", 3),))
    switch.apply(TableMod(VM.dpid, add=(stray,),
                          modify=(Flow(host.table, host.priority, host.match, (("output", 3),)),), delete=(route,)))
    switch.apply(TableMod(VM.dpid, group_delete=tuple(switch.groups)))
    assert switch.forward(to_remote).controller  # the route is gone: its packets go to the VM
    lines = verify(core, switch, ECMP_FIB, pivot)
    assert [line.split(" flow ")[0] for line in lines if " flow " in line] == \
        ["rA: missing", "rA: wrong", "rA: stale"]
    assert [line.split(" group ")[0] for line in lines if " group " in line] == ["rA: missing"]
    # The RFVS that lost its relay flows is told apart from one that kept them.
    rfvs = switches[RFVS]
    rfvs.apply(TableMod(RFVS, delete=tuple(rfvs.flows)))
    assert {line.split(" flow ")[0] for line in verify(core, rfvs, None, pivot)} == {"rA: missing"}


def test_a_datapath_not_ours_or_a_vm_without_its_fib_is_not_checked():
    core, _ = programmed()
    assert not expect_table(TableComparison(), core.nib, 0x99, [ECMP_FIB], ports())
    assert not expect_table(TableComparison(), core.nib, VM.dpid, [], ports())
