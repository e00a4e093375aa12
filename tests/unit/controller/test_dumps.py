"""Table dump bookkeeping: reply parts gathered, passed on in parts, failed, timed out."""

from __future__ import annotations

import math

from routeflow.controller.dumps import DUMP_PART, DUMP_TIMEOUT, TableDumps
from routeflow.model import CONTROLLER, Flow, Group, match, output
from routeflow.protocol.messages import TableDump

S1, S2 = 0x1, 0x2
FLOWS = [Flow(1, 1000 + i, match(eth_type=0x800, ipv4_dst=f"10.0.{i}.0/24"), (output(1),)) for i in range(5)]
GROUP = Group(3, "select", ((output(1),), (output(2),)))


def test_a_dump_is_answered_when_both_requests_are_complete():
    dumps = TableDumps()
    dumps.start(7, S1, (10, 11), now=0.0)
    assert dumps.expects(S1, 10) and dumps.expects(S1, 11) and not dumps.expects(S2, 10)
    assert dumps.reply(S1, 10, FLOWS[:1], [], more=True, now=1.0) == []
    assert dumps.reply(S1, 10, [Flow(0, 5, match(eth_type=0x806), (CONTROLLER,))], [], more=False, now=2.0) == []
    assert dumps.reply(S1, 11, [], [GROUP], more=False, now=3.0) == [
        TableDump(7, S1, (FLOWS[0], Flow(0, 5, match(eth_type=0x806), (CONTROLLER,))), (GROUP,))]
    assert not dumps and not dumps.expects(S1, 10)
    assert dumps.reply(S1, 10, FLOWS, [], more=False, now=4.0) == [], "too late: already answered"


def test_an_empty_table_is_one_empty_reply():
    dumps = TableDumps()
    dumps.start(1, S1, (1, 2), 0.0)
    dumps.reply(S1, 2, [], [], more=False, now=0.0)
    assert dumps.reply(S1, 1, [], [], more=False, now=0.0) == [TableDump(1, S1, (), ())]


def test_whole_parts_leave_as_replies_come_in():
    dumps = TableDumps(part=2)
    dumps.start(9, S1, (1, 2), 0.0)
    parts = dumps.reply(S1, 1, FLOWS, [], more=False, now=0.0)
    assert [(len(p.flows), p.more) for p in parts] == [(2, True), (2, True)]
    parts += dumps.reply(S1, 2, [], [GROUP], more=False, now=0.0)
    assert [(len(p.flows), p.groups, p.more) for p in parts] == [(2, (), True), (2, (), True), (1, (GROUP,), False)]
    assert sum((p.flows for p in parts), ()) == tuple(FLOWS)
    assert {p.request_id for p in parts} == {9}


def test_an_error_fails_the_dump_once():
    dumps = TableDumps()
    dumps.start(2, S1, (1, 2), 0.0)
    dumps.reply(S1, 1, FLOWS, [], more=True, now=0.0)
    assert dumps.fail(S1, 2, "OFPBRC_BAD_MULTIPART") == [TableDump(2, S1, (), (), "OFPBRC_BAD_MULTIPART")]
    assert dumps.fail(S1, 1, "again") == [] and not dumps


def test_a_datapath_gone_fails_its_dumps_only():
    dumps = TableDumps()
    dumps.start(3, S1, (1, 2), 0.0)
    dumps.start(4, S1, (3, 4), 0.0)
    dumps.start(5, S2, (5, 6), 0.0)
    assert dumps.fail_datapath(S1, "datapath disconnected") == [
        TableDump(3, S1, (), (), "datapath disconnected"), TableDump(4, S1, (), (), "datapath disconnected")]
    assert dumps.expects(S2, 5) and not dumps.expects(S1, 3)


def test_a_dump_times_out_when_the_switch_falls_silent():
    dumps = TableDumps()
    assert DUMP_TIMEOUT == 10.0 and DUMP_PART == 10_000 and dumps.next_deadline() == math.inf
    dumps.start(4, S1, (1, 2), now=100.0)
    assert dumps.next_deadline() == 110.0
    assert dumps.expire(109.9) == []
    dumps.reply(S1, 1, FLOWS, [], more=True, now=109.0)  # each part restarts the clock
    assert dumps.expire(118.0) == [] and dumps.next_deadline() == 119.0
    assert dumps.expire(119.0) == [TableDump(4, S1, (), (), "timed out")]
    assert not dumps and dumps.expire(200.0) == []
