import pytest
from routeflow_bench.parse import (
    parse_fib_prefixes,
    parse_flow_count,
    parse_frr_route_counts,
    parse_ping,
    parse_proc_status_kb,
)

PING_D = """PING 172.31.2.100 (172.31.2.100) 56(84) bytes of data.
[1764042000.100000] 64 bytes from 172.31.2.100: icmp_seq=1 ttl=62 time=0.512 ms
[1764042000.101000] 64 bytes from 172.31.2.100: icmp_seq=2 ttl=62 time=0.498 ms
[1764042000.104000] 64 bytes from 172.31.2.100: icmp_seq=5 ttl=62 time=1.20 ms
[1764042000.104100] 64 bytes from 172.31.2.100: icmp_seq=5 ttl=62 time=1.30 ms (DUP!)

--- 172.31.2.100 ping statistics ---
5 packets transmitted, 3 received, +1 duplicates, 40% packet loss, time 4ms
rtt min/avg/max/mdev = 0.498/0.736/1.200/0.324 ms, ipg/ewma 1.000/0.600 ms
"""

PING = """PING 172.31.1.1 (172.31.1.1) 56(84) bytes of data.
64 bytes from 172.31.1.1: icmp_seq=1 ttl=64 time=2.93 ms
64 bytes from 172.31.1.1: icmp_seq=2 ttl=64 time=3.10 ms

--- 172.31.1.1 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 1001ms
"""


def test_parse_ping_with_timestamps_losses_and_duplicates():
    run = parse_ping(PING_D)
    assert (run.transmitted, run.received) == (5, 3)
    assert run.seqs == [1, 2, 5]
    assert run.rtts_ms == [0.512, 0.498, 1.2]
    assert run.stamps == [1764042000.1, 1764042000.101, 1764042000.104]
    assert run.missing() == [3, 4]


def test_parse_ping_plain():
    run = parse_ping(PING)
    assert (run.transmitted, run.received, run.rtts_ms, run.stamps) == (2, 2, [2.93, 3.1], [])


def test_parse_ping_without_summary_counts_replies():
    run = parse_ping(PING.split("\n---")[0])
    assert (run.transmitted, run.received) == (2, 2)


def test_parse_flow_count():
    text = "OFPST_AGGREGATE reply (OF1.3) (xid=0x2): packet_count=12 byte_count=1004 flow_count=100004\n"
    assert parse_flow_count(text) == 100004
    with pytest.raises(ValueError):
        parse_flow_count("ovs-ofctl: s1 is not a bridge or a socket")


def test_parse_proc_status():
    text = "Name:\tpython\nVmPeak:\t  800000 kB\nVmHWM:\t  575012 kB\nVmRSS:\t  570692 kB\nThreads:\t1\n"
    assert parse_proc_status_kb(text) == {"VmPeak": 800000, "VmHWM": 575012, "VmRSS": 570692}


def test_prober_echo_request_checksum_verifies():
    from routeflow_bench.prober import checksum, echo_request

    packet = echo_request(0x1234, 70000)
    assert packet[0] == 8 and packet[6:8] == (70000 & 0xFFFF).to_bytes(2, "big")
    assert checksum(packet) == 0  # a correct ICMP checksum sums to zero


FIB_TRIESTAT = """Basic info: size of leaf: 48 bytes, size of tnode: 40 bytes.
Main:
\tAver depth:     2.42
\tMax depth:      3
\tLeaves:         100005
\tPrefixes:       100007
\tInternal nodes: 5
\t  1: 1  2: 3  3: 1
\tPointers: 22
Null ptrs: 11
Total size: 2  kB
Local:
\tAver depth:     2.42
\tLeaves:         7
\tPrefixes:       7
"""


def test_parse_fib_prefixes_reads_the_main_table():
    assert parse_fib_prefixes(FIB_TRIESTAT) == 100007
    # An empty main trie has no Prefixes line of its own: do not read Local's.
    with pytest.raises(ValueError):
        parse_fib_prefixes("Basic info: x\nMain:\n\tAver depth: 0\nLocal:\n\tPrefixes: 7\n")
    with pytest.raises(ValueError):
        parse_fib_prefixes("")


def test_parse_frr_route_counts():
    text = ('{"routes":[{"fib":100000,"rib":100000,"fibOffLoaded":0,"fibTrapped":0,"type":"kernel"},'
            '{"fib":1,"rib":1,"fibOffLoaded":0,"fibTrapped":0,"type":"connected"}],'
            '"routesTotal":100001,"routesTotalFib":100001}')
    assert parse_frr_route_counts(text) == {"kernel": 100000, "connected": 1}
    assert parse_frr_route_counts("{}") == {}
