"""The churn generator's planning: table parsing, gateways, the sliding window, pacing and
the Netlink messages (decoded back by pyroute2's own parser)."""

from __future__ import annotations

import gzip
import ipaddress
import struct
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from routeflow.lab.churn import (
    CHURN_PROTO,
    NLMSG_ERROR,
    RTM_DELROUTE,
    RTM_NEWROUTE,
    ChurnOptions,
    ChurnPlan,
    ChurnReport,
    ChurnRoute,
    TableEntry,
    assign_gateways,
    due,
    encode_change,
    parse_args,
    parse_errors,
    parse_table,
    read_table,
)

TABLE = """\
; IP-ASN32-DAT file
; Original source:\tsomewhere
1.0.0.0/24\t15169
1.0.4.0/22\t56203
10.1.0.0/16\t64512
1.0.4.0/22\t56203
192.168.5.0/24\t1
not-a-prefix\t7
2001:db8::/32\t6939
1.0.5.0/24\t56203
8.8.8.0/24\t15169
5.0.0.0/16\t3333
"""


def test_parse_table_keeps_global_ipv4_and_stops_at_the_limit():
    entries = parse_table(TABLE.splitlines(), limit=3)
    assert entries == [TableEntry("1.0.0.0/24", 15169), TableEntry("1.0.4.0/22", 56203),
                       TableEntry("1.0.5.0/24", 56203)]


def test_parse_table_skips_prefixes_overlapping_the_vms_subnets():
    entries = parse_table(TABLE.splitlines(), limit=10, exclude=[ipaddress.IPv4Network("1.0.4.0/23")])
    assert [e.prefix for e in entries] == ["1.0.0.0/24", "8.8.8.0/24", "5.0.0.0/16"]


def test_parse_table_reads_no_further_than_needed():
    def lines():
        yield "1.0.0.0/24\t1"
        yield "2.0.0.0/24\t2"
        raise AssertionError("read past the limit")

    assert len(parse_table(lines(), limit=2)) == 2


def test_read_table_gzip_and_too_small(tmp_path: Path):
    path = tmp_path / "t.dat.gz"
    path.write_bytes(gzip.compress(TABLE.encode()))
    assert len(read_table(path, 5)) == 5
    with pytest.raises(ValueError, match="only 5 usable"):
        read_table(path, 6)


def test_gateways_by_origin_as_modulo_their_number():
    entries = [TableEntry("1.0.0.0/24", 3), TableEntry("2.0.0.0/24", 4), TableEntry("3.0.0.0/24", 5)]
    routes = assign_gateways(entries, ["10.0.13.3", "10.0.12.2"])  # sorted numerically: .12.2 first
    assert [r.gateway for r in routes] == ["10.0.13.3", "10.0.12.2", "10.0.13.3"]
    with pytest.raises(ValueError):
        assign_gateways(entries, [])


def _plan(pool: int, window: int) -> ChurnPlan:
    return ChurnPlan(tuple(ChurnRoute(f"1.0.{i}.0/24", "10.0.0.2") for i in range(pool)), window)


@pytest.mark.parametrize("pool,window", [(10, 3), (7, 6), (5, 1)])
def test_plan_never_adds_a_present_route_nor_deletes_an_absent_one(pool: int, window: int):
    plan = _plan(pool, window)
    present: set[int] = set()
    for i in range(5 * pool + 3):
        assert sorted(present) == sorted(plan.present_after(i))
        add, index = plan.change(i)
        if add:
            assert index not in present
            present.add(index)
        else:
            assert index in present
            present.remove(index)
        assert len(present) <= window
    # Every prefix of the pool flaps: added and withdrawn.
    assert {plan.change(i)[1] for i in range(window, window + 2 * pool)} == set(range(pool))


def test_plan_window_must_fit_the_pool():
    with pytest.raises(ValueError):
        _plan(5, 5)
    with pytest.raises(ValueError):
        _plan(5, 0)


def test_due_paces_caps_and_stops_at_the_total():
    assert due(10_000, 0.0105, 0, 600_000, 1000) == 105
    assert due(10_000, 0.0105, 100, 600_000, 1000) == 5
    assert due(10_000, 5.0, 100, 600_000, 1000) == 1000  # far behind: catch up a batch at a time
    assert due(10_000, 61.0, 599_990, 600_000, 1000) == 10
    assert due(10_000, 0.01, 200, 600_000, 1000) == 0


def _decoded(data: bytes) -> rtmsg:
    msg = rtmsg(data)
    msg.decode()
    return msg


def test_encoded_add_and_delete_decode_as_the_route():
    route = ChurnRoute("1.0.4.0/22", "10.0.12.2")
    add = _decoded(encode_change(route, True, 7))
    assert add["header"]["type"] == RTM_NEWROUTE and add["header"]["sequence_number"] == 7
    assert add["header"]["flags"] == 0x1 | 0x400 | 0x200  # request, create, exclusive
    assert (add["dst_len"], add["proto"], add["table"]) == (22, CHURN_PROTO, 254)
    assert add.get_attr("RTA_DST") == "1.0.4.0" and add.get_attr("RTA_GATEWAY") == "10.0.12.2"
    delete = _decoded(encode_change(route, False, 7))
    assert delete["header"]["type"] == RTM_DELROUTE and delete["proto"] == CHURN_PROTO
    assert delete.get_attr("RTA_DST") == "1.0.4.0" and delete.get_attr("RTA_GATEWAY") is None


def _error(code: int, kind: int, seq: int) -> bytes:
    original = struct.pack("=IHHII", 44, kind, 1, seq, 0)
    body = struct.pack("=i", code) + original
    return struct.pack("=IHHII", 16 + len(body), NLMSG_ERROR, 0, seq, 0) + body


def test_parse_errors_reads_refusals_and_skips_acks():
    data = _error(-17, RTM_NEWROUTE, 3) + _error(0, RTM_NEWROUTE, 4) + _error(-3, RTM_DELROUTE, 9)
    assert list(parse_errors(data)) == [(17, RTM_NEWROUTE, 3), (3, RTM_DELROUTE, 9)]
    assert list(parse_errors(b"\x00" * 8)) == []


def test_report_counts_lost_routes_both_ways():
    report = ChurnReport(rate=10, duration=1, pool=3, window=2, proto=CHURN_PROTO, gateways=["10.0.0.2"],
                         changes=20, started_at=100.0, ended_at=102.0,
                         final_expected=["1.0.0.0/24", "1.0.1.0/24"], final_kernel=["1.0.1.0/24", "1.0.2.0/24"])
    assert report.achieved_rate == 10.0
    assert report.lost_in_kernel == ["1.0.0.0/24", "1.0.2.0/24"]


def test_options_round_trip_through_the_command_line():
    options = ChurnOptions(rate=2000, duration=10, pool=300, window=100, gateways=("10.0.12.2", "10.0.13.3"),
                           table=Path("/t.gz"))
    args = parse_args(options.argv())
    assert (args.rate, args.duration, args.pool, args.window, args.table, args.via, args.flush) == (
        2000, 10, 300, 100, Path("/t.gz"), ["10.0.12.2", "10.0.13.3"], False)
