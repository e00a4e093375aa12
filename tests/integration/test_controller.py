"""The RF-Controller process against real Open vSwitch bridges and a fake RF-Server.

A switch bridge ``tco-s1`` and an RFVS bridge ``tco-rfvs`` each get two veth
ports; the far ends of the veths stay in the root namespace, where the test
sends and captures frames with raw sockets.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.fakeserver import FakeServer
from tests.frames import captured, frame, raw_socket
from tests.processes import sh, start_controller, stop_process

from routeflow.model import CONTROLLER, DEC_TTL, Flow, Group, PortDesc, group, match, output, set_field
from routeflow.protocol import auth, mapping
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    ControllerStats,
    DatapathJoin,
    DumpTable,
    Goodbye,
    Hello,
    MappingSeen,
    PortChange,
    RelayEntry,
    RelayMap,
    StatsRequest,
    TableDump,
    TableMod,
    Welcome,
)

pytestmark = pytest.mark.integration

OF_PORT = 16653
S1, RFVS = 0x0000_0000_00C0_0001, 0x0000_0000_00C0_7266
BRIDGES = {S1: "tco-s1", RFVS: "tco-rfvs"}
# (bridge dpid, OpenFlow port, OVS-side veth end, far end used by the test)
VETHS = [
    (S1, 1, "tco-s1-p1", "tco-s1-h1"),
    (S1, 2, "tco-s1-p2", "tco-s1-h2"),
    (RFVS, 1, "tco-rv-p1", "tco-rv-h1"),
    (RFVS, 2, "tco-rv-p2", "tco-rv-h2"),
]


@pytest.fixture(scope="module", autouse=True)
def needs_ovs() -> None:
    if os.geteuid() != 0 or shutil.which("ovs-vsctl") is None:
        pytest.skip("needs root and Open vSwitch")
    if sh("ovs-vsctl", "--timeout=5", "show", check=False).returncode != 0:
        pytest.skip("ovs-vswitchd/ovsdb-server not running")


def remove_topology() -> None:
    for name in BRIDGES.values():
        sh("ovs-vsctl", "--if-exists", "del-br", name, check=False)
    for _, _, ovs_end, _ in VETHS:
        sh("ip", "link", "del", ovs_end, check=False)


def build_topology() -> None:
    for _, _, ovs_end, far_end in VETHS:
        sh("ip", "link", "add", ovs_end, "type", "veth", "peer", "name", far_end)
        for end in (ovs_end, far_end):
            # No IPv6 autoconfiguration chatter on the test links.
            sh("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1", check=False)
            sh("ip", "link", "set", end, "up")
    for dpid, name in BRIDGES.items():
        argv = ["ovs-vsctl", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
                "fail_mode=secure", "protocols=OpenFlow13", f"other-config:datapath-id={dpid:016x}"]
        for port_dpid, port_no, ovs_end, _ in VETHS:
            if port_dpid == dpid:
                argv += ["--", "add-port", name, ovs_end, "--", "set", "interface", ovs_end,
                         f"ofport_request={port_no}"]
        argv += ["--", "set-controller", name, f"tcp:127.0.0.1:{OF_PORT}"]
        sh(*argv)


def joined(dpid: int) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, DatapathJoin) and m.dpid == dpid


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeServer, dict[int, DatapathJoin]]]:
    tmp = tmp_path_factory.mktemp("controller")
    remove_topology()  # leftovers of an interrupted run
    server = FakeServer(tmp / "server.sock", Welcome(PROTOCOL_VERSION, (RFVS,)), keys=auth.KEY_DIR)
    proc = start_controller(server.address, OF_PORT, tmp / "controller.log")
    try:
        server.wait_for(lambda m: isinstance(m, Hello))
        build_topology()
        joins = {dpid: server.wait_for(joined(dpid)) for dpid in BRIDGES}
        # Everything goes to the controller on the RFVS, as the server would install.
        server.send(TableMod(RFVS, add=(Flow(0, 0, (), (CONTROLLER,)),)))
        yield server, joins
    finally:
        try:
            remove_topology()
        finally:
            stop_process(proc)
            server.close()
            print((tmp / "controller.log").read_text()[-5000:])
    assert not set(BRIDGES.values()) & set(sh("ovs-vsctl", "list-br").stdout.split())


def dump(server: FakeServer, dpid: int, request_id: int) -> TableDump:
    since = server.mark()
    server.send(DumpTable(request_id, dpid))
    reply = server.wait_for(lambda m: isinstance(m, TableDump) and m.request_id == request_id, since)
    assert reply.error == ""
    return reply


def test_datapaths_join_with_their_ports(env):
    _, joins = env
    for dpid in BRIDGES:
        ports = {p.port_no: p.name for p in joins[dpid].ports}
        assert ports == {no: ovs_end for d, no, ovs_end, _ in VETHS if d == dpid}
        assert all(isinstance(p, PortDesc) for p in joins[dpid].ports)


MAC_R, MAC_A, MAC_B = "02:00:00:00:0c:01", "0a:00:00:00:0c:0a", "0a:00:00:00:0c:0b"
ECMP = Group(0x1234, "select", (
    (set_field("eth_src", MAC_R), set_field("eth_dst", MAC_A), output(1)),
    (set_field("eth_src", MAC_R), set_field("eth_dst", MAC_B), output(2)),
))
HOST = Flow(1, 1032, match(eth_type=0x800, ipv4_dst="10.0.0.5"),
            (DEC_TTL, set_field("eth_src", MAC_R), set_field("eth_dst", MAC_A), output(2)))
BLACKHOLE = Flow(1, 1016, match(eth_type=0x800, ipv4_dst="10.9.0.0/16"))
FLOWS = (
    Flow(0, 400, match(eth_type=0x806), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=89), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=6, tcp_dst=179), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=6, tcp_src=179, ipv4_src="10.0.0.0/8"), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=17, udp_dst=3784), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x86DD, ip_proto=58, icmpv6_type=135, ipv6_dst="ff02::1:ff00:0/104"),
         (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x86DD, ipv6_src="2001:db8::1", ipv6_dst="2001:db8::2"), (CONTROLLER,)),
    Flow(0, 200, match(in_port=1, eth_dst=MAC_R), goto=1),
    Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (DEC_TTL, group(ECMP.group_id))),
    HOST,
    BLACKHOLE,
    Flow(1, 0, (), (CONTROLLER,)),
)


def test_table_mod_then_dump_modify_delete(env):
    server, _ = env
    server.send(TableMod(S1, add=FLOWS, group_add=(ECMP,)))
    table = dump(server, S1, 101)
    assert set(table.flows) == set(FLOWS) and len(table.flows) == len(FLOWS)
    assert table.groups == (ECMP,)

    moved = Flow(HOST.table, HOST.priority, HOST.match, (DEC_TTL, output(1)))
    server.send(TableMod(S1, modify=(moved,), delete=(BLACKHOLE.key,)))
    table = dump(server, S1, 102)
    assert set(table.flows) == (set(FLOWS) - {HOST, BLACKHOLE}) | {moved}

    server.send(TableMod(S1, delete=tuple(f.key for f in table.flows), group_delete=(ECMP.group_id,)))
    table = dump(server, S1, 103)
    assert (table.flows, table.groups) == ((), ())


def test_dump_of_unknown_datapath_is_an_error(env):
    server, _ = env
    server.send(DumpTable(104, 0xDEAD))
    reply = server.wait_for(lambda m: isinstance(m, TableDump) and m.request_id == 104)
    assert reply.error


def test_link_down_and_up_reported(env):
    server, _ = env
    since = server.mark()
    sh("ip", "link", "set", "tco-s1-h2", "down")
    try:
        change = server.wait_for(lambda m: isinstance(m, PortChange) and m.port.port_no == 2 and not m.port.up, since)
        assert (change.dpid, change.deleted, change.port.name) == (S1, False, "tco-s1-p2")
    finally:
        since = server.mark()
        sh("ip", "link", "set", "tco-s1-h2", "up")
    server.wait_for(lambda m: isinstance(m, PortChange) and m.port.port_no == 2 and m.port.up, since)



def test_mapping_packet_is_reported(env):
    server, _ = env
    since = server.mark()
    with raw_socket("tco-rv-h2") as sock:
        sock.send(mapping.encode("rA", "eth2", "02:00:00:00:0c:02"))
    seen = server.wait_for(lambda m: isinstance(m, MappingSeen), since)
    assert seen == MappingSeen(RFVS, 2, "rA", "eth2")


def test_slow_path_relay_both_ways(env):
    server, _ = env
    server.send(TableMod(S1, add=(Flow(0, 0, (), (CONTROLLER,)),)))
    server.send(RelayMap((RelayEntry(S1, 1, RFVS, 1), RelayEntry(S1, 2, RFVS, 2))))
    try:
        with raw_socket("tco-s1-h1") as host, raw_socket("tco-rv-h1") as vm:
            dump(server, S1, 105)  # the catch-all flow is in place once the dump shows it
            up = frame(b"to-the-vm")
            host.send(up)
            assert captured(vm, b"to-the-vm") == up
            down = frame(b"to-the-host")
            vm.send(down)
            assert captured(host, b"to-the-host") == down
        since = server.mark()
        server.send(StatsRequest(106))
        stats = server.wait_for(lambda m: isinstance(m, ControllerStats), since)
        assert stats.packet_in.get(S1, 0) >= 1 and stats.packet_out.get(RFVS, 0) >= 1
    finally:
        server.send(TableMod(S1, delete=(Flow(0, 0, ()).key,)))


def test_sigterm_says_goodbye_and_exits_cleanly(tmp_path):
    server = FakeServer(tmp_path / "server.sock", Welcome(PROTOCOL_VERSION, (RFVS,)), keys=auth.KEY_DIR)
    proc = start_controller(server.address, OF_PORT + 1, tmp_path / "controller.log")
    try:
        server.wait_for(lambda m: isinstance(m, Hello))
        server.send(StatsRequest(1))  # answered once the session is fully up
        server.wait_for(lambda m: isinstance(m, ControllerStats))
        assert stop_process(proc) == 0, (tmp_path / "controller.log").read_text()
        assert server.wait_for(lambda m: isinstance(m, Goodbye), timeout=1).reason
    finally:
        stop_process(proc)
        server.close()


def ipv4_frame(ttl: int, marker: bytes) -> bytes:
    payload = marker.ljust(20, b"\0")
    header = bytearray(20)
    header[0], header[8], header[9] = 0x45, ttl, 253  # IPv4, TTL, experimental protocol
    header[2:4] = (20 + len(payload)).to_bytes(2, "big")
    header[12:16], header[16:20] = bytes([10, 0, 0, 1]), bytes([10, 0, 5, 1])
    checksum = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, 20, 2))
    checksum = (checksum & 0xFFFF) + (checksum >> 16)
    header[10:12] = (~checksum & 0xFFFF).to_bytes(2, "big")
    return bytes.fromhex("02000000aa01" "02000000aa02" "0800") + bytes(header) + payload


def test_ttl_expired_packets_reach_the_vm(env):
    """dec_nw_ttl on TTL 1 makes the switch send an OFPR_INVALID_TTL packet-in, relayed to the VM."""
    server, _ = env
    routed = Flow(0, 10, match(eth_type=0x800, ipv4_dst="10.0.5.1"), (DEC_TTL, output(2)))
    server.send(TableMod(S1, add=(routed,)))
    server.send(RelayMap((RelayEntry(S1, 1, RFVS, 1),)))
    try:
        with raw_socket("tco-s1-h1") as host, raw_socket("tco-rv-h1") as vm, raw_socket("tco-s1-h2") as far:
            dump(server, S1, 107)
            host.send(ipv4_frame(5, b"ttl-five"))
            assert captured(far, b"ttl-five") is not None, "routed in the data plane"
            expiring = ipv4_frame(1, b"ttl-one")
            host.send(expiring)
            assert captured(vm, b"ttl-one") == expiring
            assert captured(far, b"ttl-one", timeout=0.5) is None
    finally:
        server.send(TableMod(S1, delete=(routed.key,)))


def test_taken_openflow_port_fails_fast(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", OF_PORT + 2))
        squatter.listen()
        proc = start_controller(f"unix:{tmp_path / 'nobody.sock'}", OF_PORT + 2, tmp_path / "controller.log")
        try:
            assert proc.wait(20) != 0
        finally:
            stop_process(proc)
    assert "in use" in (tmp_path / "controller.log").read_text()


LARGE = 50_000


def wait_dump(server: FakeServer, dpid: int, request_id: int, timeout: float = 120.0) -> TableDump:
    """The whole dump: its parts joined once the last has arrived."""
    since = server.mark()
    server.send(DumpTable(request_id, dpid))
    last = server.wait_for(lambda m: isinstance(m, TableDump) and m.request_id == request_id and not m.more,
                           since, timeout)
    assert last.error == ""
    parts = [m for m in server.received[since:] if isinstance(m, TableDump) and m.request_id == request_id]
    return TableDump(request_id, dpid, tuple(f for p in parts for f in p.flows), last.groups)


def test_large_table_add_dump_delete(env, capsys):
    """50k routes through the fast wire codec both ways: added, dumped and compared, deleted."""
    server, _ = env
    hops = [(set_field("eth_src", MAC_R), set_field("eth_dst", f"0a:00:00:00:{n:02x}:01"), output(n % 2 + 1))
            for n in range(16)]
    ecmp = Group(0x4321, "select", tuple(hops[:4]))
    flows = tuple(
        Flow(1, 1024, match(eth_type=0x800, ipv4_dst=f"{20 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"),
             (DEC_TTL, group(ecmp.group_id)) if i % 10 == 0 else (DEC_TTL, *hops[i % 16]))
        for i in range(LARGE)
    )
    before = wait_dump(server, S1, 201)
    start = time.monotonic()
    server.send(TableMod(S1, add=flows, group_add=(ecmp,)))
    table = wait_dump(server, S1, 202)  # the switch answers after applying the flow mods
    added = time.monotonic() - start
    assert set(table.flows) == set(before.flows) | set(flows) and len(table.flows) == len(before.flows) + LARGE
    assert set(table.groups) == set(before.groups) | {ecmp}

    start = time.monotonic()
    table = wait_dump(server, S1, 203)
    dumped = time.monotonic() - start
    assert len(table.flows) == len(before.flows) + LARGE

    start = time.monotonic()
    server.send(TableMod(S1, delete=tuple(f.key for f in flows), group_delete=(ecmp.group_id,)))
    table = wait_dump(server, S1, 204)
    deleted = time.monotonic() - start
    assert set(table.flows) == set(before.flows) and set(table.groups) == set(before.groups)
    with capsys.disabled():
        print(f"\n{LARGE} flows: add+dump {added:.2f}s, dump {dumped:.2f}s "
              f"({LARGE / dumped:.0f} flows/s), delete+dump {deleted:.2f}s")
