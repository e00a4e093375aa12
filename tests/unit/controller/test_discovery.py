"""The link table behind discovery: sightings, losses by time and by port."""

from routeflow.controller.discovery import Change, LinkTable

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
