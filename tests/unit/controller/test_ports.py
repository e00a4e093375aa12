"""The ports of each datapath: joins from complete replies, port changes after, a bound on both."""

from __future__ import annotations

from routeflow.controller.ports import MAX_PORTS, DatapathPorts
from routeflow.model import PortDesc
from routeflow.protocol.messages import DatapathJoin, PortChange

S1, S2 = 0x1, 0x2
MAC = "02:00:00:00:00:01"


def port(no: int, up: bool = True) -> PortDesc:
    return PortDesc(no, f"p{no}", MAC, up)


def test_a_datapath_joins_after_the_last_part_of_the_reply_to_its_request():
    ports = DatapathPorts()
    ports.request(S1, 7)
    assert ports.reply(S1, 7, [port(2, up=False)], more=True) == []
    assert ports.reply(S1, 8, [port(9)], more=False) == [], "the reply to another request"
    assert ports.reply(S2, 7, [port(9)], more=False) == [], "nobody asked"
    assert ports.reply(S1, 7, [port(1)], more=False) == [DatapathJoin(S1, (port(1), port(2, up=False)))]
    assert ports.reply(S1, 7, [port(3)], more=False) == [], "answered already"
    assert ports.joins() == [DatapathJoin(S1, (port(1), port(2, up=False)))]


def test_port_changes_after_the_join_only():
    ports = DatapathPorts()
    ports.request(S1, 1)
    assert ports.status(S1, port(1, up=False), deleted=False) == [], "before the join, its reply covers this"
    ports.reply(S1, 1, [port(1), port(2)], more=False)
    assert ports.status(S1, port(1, up=False), deleted=False) == [PortChange(S1, port(1, up=False))]
    assert ports.status(S1, port(2), deleted=True) == [PortChange(S1, port(2), deleted=True)]
    assert ports.joined == {S1: {1: port(1, up=False)}}


def test_a_new_connection_keeps_the_ports_known_until_its_join():
    ports = DatapathPorts()
    ports.request(S1, 1)
    ports.reply(S1, 1, [port(1)], more=False)
    ports.request(S1, 2)  # reconnected
    assert ports.joined == {S1: {1: port(1)}}
    assert ports.reply(S1, 2, [port(1), port(5)], more=False) == [DatapathJoin(S1, (port(1), port(5)))]
    assert ports.forget(S1) and not ports.forget(S1) and ports.joins() == []
    ports.request(S2, 3)
    assert not ports.forget(S2), "never joined: no leave"
    assert ports.reply(S2, 3, [port(1)], more=False) == []


def test_ports_are_bounded():
    assert MAX_PORTS == 65536
    ports = DatapathPorts(limit=3)
    ports.request(S1, 1)
    ports.reply(S1, 1, [port(1), port(2)], more=True)
    (joined,) = ports.reply(S1, 1, [port(3), port(4), port(5)], more=False)
    assert [p.port_no for p in joined.ports] == [1, 2, 3]
    assert ports.status(S1, port(6), deleted=False) == []
    assert ports.status(S1, port(3, up=False), deleted=False) == [PortChange(S1, port(3, up=False))]
    assert len(ports.status(S1, port(3), deleted=True)) == 1
    assert len(ports.status(S1, port(6), deleted=False)) == 1  # room again
