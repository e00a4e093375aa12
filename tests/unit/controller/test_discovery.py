"""Discovery: the link table (sightings, losses by time and by port) and the prober around it."""

from routeflow.controller.actions import PacketOut
from routeflow.controller.discovery import Change, LinkTable, Prober
from routeflow.model import PortDesc
from routeflow.protocol import lldp
from routeflow.protocol.messages import DiscoveryPlan, LinkChange

A, B, C = (1, 3), (2, 2), (3, 5)


def test_links_come_up_once_and_expire_without_probes():
    table = LinkTable(timeout=3.5)
    assert table.seen(A, B, now=0.0) == [Change(A, B, True)]
    assert table.seen(A, B, now=1.0) == []
    assert table.expire(now=4.0) == []
    assert table.expire(now=4.6) == [Change(A, B, False)]
    assert table.seen(A, B, now=5.0) == [Change(A, B, True)]


def test_a_port_has_one_peer_and_loses_it_with_its_link():
    table = LinkTable(timeout=3.5)
    table.seen(A, B, 0.0)
    table.seen(B, A, 0.0)
    # Recabled: probes from C now arrive where A's did.
    assert table.seen(C, B, 1.0) == [Change(A, B, False), Change(C, B, True)]
    assert table.port_down(A) == [Change(B, A, False)]
    assert table.datapath_gone(2) == [Change(C, B, False)]
    assert table.last_seen == {}


# -- the prober ----------------------------------------------------------------------------

S1, S2, S3 = 0x1, 0x2, 0x3
MAC = "02:00:00:00:00:01"
PORTS = {
    S1: {1: PortDesc(1, "s1-eth1", MAC, True), 2: PortDesc(2, "s1-eth2", MAC, True)},
    S2: {1: PortDesc(1, "s2-eth1", MAC, True), 2: PortDesc(2, "s2-eth2", MAC, False)},
    S3: {1: PortDesc(1, "s3-eth1", MAC, True)},
}


def probes(actions) -> list[tuple[int, int, tuple[int, int] | None]]:
    """(dpid, port, where the probe says it left from) of each probe out."""
    return sorted((a.dpid, a.port, lldp.parse_probe(a.data)) for a in actions if isinstance(a, PacketOut))


def test_a_plan_probes_every_port_up_of_its_datapaths_at_once_then_each_interval():
    prober = Prober()
    assert prober.tick(PORTS, now=5.0) == []  # no plan: nothing to probe
    sent = prober.plan(DiscoveryPlan((S1, S2), interval=2.0), PORTS, now=10.0)
    assert probes(sent) == [(S1, 1, (S1, 1)), (S1, 2, (S1, 2)), (S2, 1, (S2, 1))]
    assert all(not a.relayed for a in sent)
    assert prober.next_round == 12.0 and prober.tick(PORTS, now=11.9) == []
    assert probes(prober.tick(PORTS, now=12.0)) == probes(sent)
    assert prober.next_round == 14.0


def test_probes_find_links_and_lose_them_when_silent():
    prober = Prober()
    prober.plan(DiscoveryPlan((S1, S2), interval=1.0), PORTS, now=0.0)
    probe = lldp.build_probe(S1, 2, MAC)
    assert prober.seen(probe, S2, 1, now=0.5) == [LinkChange(S1, 2, S2, 1, True)]
    assert prober.seen(probe, S2, 1, now=0.6) == []  # seen again: no news
    assert LinkChange(S1, 2, S2, 1, False) not in prober.tick(PORTS, now=4.0)
    assert prober.tick(PORTS, now=5.0)[0] == LinkChange(S1, 2, S2, 1, False)  # 3.5 intervals silent


def test_probes_from_elsewhere_are_dropped():
    prober = Prober()
    prober.plan(DiscoveryPlan((S1, S2), interval=1.0), PORTS, now=0.0)
    foreign = lldp.DESTINATION + bytes(6) + b"\x88\xcc\x02\x07\x04abcdef"
    for frame in (foreign, lldp.build_probe(S3, 1, MAC), lldp.build_probe(S1, 0xFFFFFFFE, MAC), b"\x01"):
        assert prober.seen(frame, S2, 1, now=0.0) is None
    assert prober.links.last_seen == {}


def test_a_port_down_loses_its_links_at_once_and_back_up_is_probed_at_once():
    prober = Prober()
    prober.plan(DiscoveryPlan((S1, S2), interval=1.0), PORTS, now=0.0)
    prober.seen(lldp.build_probe(S1, 2, MAC), S2, 1, now=0.0)
    down = PortDesc(1, "s2-eth1", MAC, False)
    assert prober.port_changed(S2, down, deleted=False) == [LinkChange(S1, 2, S2, 1, False)]
    up = PortDesc(1, "s2-eth1", MAC, True)
    assert probes(prober.port_changed(S2, up, deleted=False)) == [(S2, 1, (S2, 1))]
    assert prober.port_changed(S2, up, deleted=True) == []
    assert prober.port_changed(S3, PortDesc(1, "s3-eth1", MAC, True), deleted=False) == []  # not in the plan


def test_links_are_re_reported_and_forgotten_with_their_datapath_or_plan():
    prober = Prober()
    prober.plan(DiscoveryPlan((S1, S2, S3), interval=1.0), PORTS, now=0.0)
    prober.seen(lldp.build_probe(S1, 2, MAC), S2, 1, now=0.0)
    prober.seen(lldp.build_probe(S3, 1, MAC), S1, 1, now=0.0)
    assert prober.known() == [LinkChange(S1, 2, S2, 1, True), LinkChange(S3, 1, S1, 1, True)]
    replan = prober.plan(DiscoveryPlan((S1, S2), interval=1.0), PORTS, now=1.0)
    assert [a for a in replan if isinstance(a, LinkChange)] == [LinkChange(S3, 1, S1, 1, False)]
    assert prober.datapath_gone(S2) == [LinkChange(S1, 2, S2, 1, False)]
    assert prober.known() == []
