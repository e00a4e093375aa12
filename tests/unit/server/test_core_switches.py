"""The server core driving fake switches through a fake controller: each check is
where packets go, or what the switch refused, not which messages were sent."""

from tests.datapath import CONFIG, CONNECTED, GW2, GW3, IFACES, MAC2, NEIGHBOURS, VM, ip_packet, ports
from tests.fakecontroller import FakeController
from tests.fakeswitch import FakeSwitch

from routeflow.model import Fib, Interface, NextHop, Route
from routeflow.protocol.messages import FibDelta, FibSnapshot, ResolveNextHops
from routeflow.server.core import ServerCore
from routeflow.server.status import status_document

#: A route learned from a peer, through rA's eth2 (port 2).
REMOTE = Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"),), proto="ospf")
FIB = Fib(IFACES, CONNECTED + (REMOTE,), NEIGHBOURS)
#: From a host behind port 1 to the remote network.
TO_REMOTE = ip_packet("172.31.4.7")


def running(fib: Fib | None = FIB) -> tuple[ServerCore, FakeController, FakeSwitch]:
    """A server core with rA's switch joined and, unless None, ``fib`` reported by rA."""
    core, switch = ServerCore(CONFIG), FakeSwitch(VM.dpid, ports())
    controller = FakeController(core, switch)
    controller.connect()
    controller.run(core.on_client_up("rA"))
    if fib is not None:
        controller.run(core.on_fib_snapshot("rA", FibSnapshot(fib)))
    return core, controller, switch


def test_a_route_that_changes_next_hop_is_changed_in_place_and_keeps_its_counters():
    """A changed flow is modified, not added again: an ADD would clear the entry's
    counters (and, on many switches, drop packets while it is replaced)."""
    core, controller, switch = running()
    before = switch.forward(TO_REMOTE)
    assert before.ports == [2] and before.outputs[0]["eth_dst"] == GW2
    moved = Route(REMOTE.prefix, (NextHop("eth3", "10.0.3.2"),), proto="ospf")
    controller.run(core.on_fib_delta("rA", FibDelta(routes_set=(moved,))))
    after = switch.forward(TO_REMOTE)
    assert after.ports == [3] and after.outputs[0]["eth_dst"] == GW3
    assert after.entries == before.entries and switch.packets[after.entries[-1]] == 2
    assert switch.errors == []


def test_an_ecmp_route_whose_next_hops_change_is_changed_in_place():
    """The group of a multipath route is modified, not added again (which a switch refuses)."""
    ecmp = Route(REMOTE.prefix, (NextHop("eth2", "10.0.2.2"), NextHop("eth3", "10.0.3.2")), proto="ospf")
    core, controller, switch = running(Fib(IFACES, CONNECTED + (ecmp,), NEIGHBOURS))
    first = switch.forward(TO_REMOTE)
    assert sorted(b[0]["port"] for b in first.buckets) == [2, 3]
    wider = Route(ecmp.prefix, ecmp.nexthops + (NextHop("eth1", "172.31.1.100"),), proto="ospf")
    controller.run(core.on_fib_delta("rA", FibDelta(routes_set=(wider,))))
    out = switch.forward(ip_packet("172.31.4.7", in_port=2, eth_dst=MAC2))
    assert sorted(b[0]["port"] for b in out.buckets) == [1, 2, 3]
    controller.run(core.on_fib_delta("rA", FibDelta(routes_set=(ecmp,))))
    out = switch.forward(TO_REMOTE)
    assert sorted(b[0]["port"] for b in out.buckets) == [2, 3]
    assert out.entries[-1] == first.entries[-1] and switch.packets[out.entries[-1]] == 3
    assert switch.errors == []


def test_an_interface_change_recompiles_the_whole_datapath():
    """A new MAC on eth2 changes every flow that sends out of port 2 (their source
    MAC) and which frames port 2 takes in: not something a route or neighbour key names."""
    core, controller, switch = running()
    new_mac = "02:00:00:00:00:22"
    eth2 = Interface("eth2", new_mac, True, ("10.0.2.1/30",))
    controller.run(core.on_fib_delta("rA", FibDelta(interfaces_set=(eth2,))))
    out = switch.forward(TO_REMOTE)
    assert out.ports == [2] and out.outputs[0]["eth_src"] == new_mac
    # Frames for the router on port 2 now carry the new MAC; those for the old one are not routed.
    assert switch.forward(ip_packet("172.31.1.100", in_port=2, eth_dst=new_mac)).ports == [1]
    assert switch.forward(ip_packet("172.31.1.100", in_port=2, eth_dst=MAC2)).ports == []


def test_a_vm_whose_client_is_down_is_not_asked_to_resolve_and_is_asked_at_once_when_back():
    """Attempts to resolve a next hop back off; while the client is away none are made,
    so none are counted, and the VM is asked as soon as it is back."""
    unresolved = Route("198.51.100.0/24", (NextHop("eth2", "10.0.2.99"),))
    core, controller, switch = running(Fib(IFACES, CONNECTED + (unresolved,), NEIGHBOURS))
    # Meanwhile, traffic to it goes to the VM, whose kernel resolves the next hop.
    assert switch.forward(ip_packet("198.51.100.1")).controller
    controller.run(core.resolve_due(0.0))
    assert controller.sent_to("rA", ResolveNextHops) == [ResolveNextHops((("eth2", "10.0.2.99"),))]
    controller.run(core.on_client_down("rA"))
    (vm,) = status_document(core.nib)["vms"]
    assert vm["client_connected"] is False
    for t in range(1, 100):
        controller.run(core.resolve_due(float(t)))
    assert len(controller.sent_to("rA", ResolveNextHops)) == 1
    controller.run(core.on_client_up("rA"))
    controller.run(core.resolve_due(100.0))
    assert len(controller.sent_to("rA", ResolveNextHops)) == 2


def test_a_switch_whose_dump_fails_is_dumped_again_and_then_programmed():
    core, switch = ServerCore(CONFIG), FakeSwitch(VM.dpid, ports())
    controller = FakeController(core, switch)
    controller.failing_dumps = 2
    controller.connect()
    controller.run(core.on_fib_snapshot("rA", FibSnapshot(FIB)))
    assert controller.failing_dumps == 0
    assert switch.forward(TO_REMOTE).ports == [2]


def test_a_delta_before_the_vms_first_snapshot_is_ignored():
    """After a server restart the switch keeps forwarding with the flows it holds;
    a delta before the VM's snapshot has nothing to apply to and is dropped, the
    snapshot then says what the VM holds."""
    _, _, switch = running()
    # The server restarts; the switch keeps its table.
    core = ServerCore(CONFIG)
    controller = FakeController(core, switch)
    controller.connect()
    controller.run(core.on_client_up("rA"))
    stray = Route("203.0.113.0/24", (NextHop("eth3", "10.0.3.2"),))
    controller.run(core.on_fib_delta("rA", FibDelta(routes_set=(stray,), routes_del=(REMOTE.prefix,))))
    (vm,) = status_document(core.nib)["vms"]
    assert (vm["synced"], vm["route_count"], vm["routes"]) == (False, 0, [])
    assert switch.forward(TO_REMOTE).ports == [2]
    assert switch.forward(ip_packet("203.0.113.1")).controller
    controller.run(core.on_fib_snapshot("rA", FibSnapshot(FIB)))
    (vm,) = status_document(core.nib)["vms"]
    assert vm["synced"] and {r["prefix"] for r in vm["routes"]} == {r.prefix for r in FIB.routes}
    assert switch.forward(TO_REMOTE).ports == [2]
