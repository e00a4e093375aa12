"""OpenFlow roles between two real RF-Controllers and one real Open vSwitch bridge.

Each controller reports to a fake RF-Server of its own, which tells it its part (as the
real server's election would): A active in term 10, B standing by. The bridge has both
as targets. What Open vSwitch does with the roles is what this checks: a slave is sent
port status (B's view stays current) but its writes would be refused; a new master with
a newer generation id demotes the old one, which Open vSwitch tells it with the ONF role
status of OpenFlow 1.3; a master request with an older generation id is refused as stale;
a packet to the controller goes to the master alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakeserver import FakeServer
from tests.frames import frame, raw_socket
from tests.processes import sh, start_controller, stop_process

from routeflow.harness import wait_for
from routeflow.model import CONTROLLER, Flow, match, output
from routeflow.protocol import auth
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    ControllerRole,
    ControllerStats,
    DatapathJoin,
    Hello,
    PortChange,
    StatsRequest,
    TableMod,
    Welcome,
)

pytestmark = pytest.mark.integration

PORT_A, PORT_B = 16663, 16664
DPID = 0x0000_0000_00C1_0001
BRIDGE, PORT = "tro-s1", "tro-s1-p1"
TERM = 10


@pytest.fixture(scope="module", autouse=True)
def needs_ovs() -> None:
    if os.geteuid() != 0 or shutil.which("ovs-vsctl") is None:
        pytest.skip("needs root and Open vSwitch")


def _flows() -> list[str]:
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", BRIDGE, "--no-stats").stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[FakeServer, FakeServer, Path, Path]]:
    sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE, check=False)
    server_a = FakeServer(tmp_path / "a.sock", Welcome(PROTOCOL_VERSION, controller_active=True, term=TERM),
                          keys=auth.KEY_DIR)
    server_b = FakeServer(tmp_path / "b.sock", Welcome(PROTOCOL_VERSION, controller_active=False, term=TERM),
                          keys=auth.KEY_DIR)
    logs = tmp_path / "a.log", tmp_path / "b.log"
    procs = [start_controller(server_a.address, PORT_A, logs[0]), start_controller(server_b.address, PORT_B, logs[1])]
    try:
        server_a.wait_for(lambda m: isinstance(m, Hello))
        server_b.wait_for(lambda m: isinstance(m, Hello))
        sh("ovs-vsctl", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev", "fail_mode=secure",
           "protocols=OpenFlow13", f"other-config:datapath-id={DPID:016x}",
           "--", "add-port", BRIDGE, PORT, "--", "set", "interface", PORT, "type=internal", "ofport_request=1",
           "--", "set-controller", BRIDGE, f"tcp:127.0.0.1:{PORT_A}", f"tcp:127.0.0.1:{PORT_B}")
        yield server_a, server_b, *logs
    finally:
        try:
            sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE, check=False)
        finally:
            for proc in procs:
                stop_process(proc)
            server_a.close()
            server_b.close()
            for log in logs:
                print(log.read_text()[-3000:])


def _packet_ins(server: FakeServer, request_id: int) -> int:
    """Packet-ins the controller of ``server`` has had from the bridge (it must be active to answer)."""
    since = server.mark()
    server.send(StatsRequest(request_id))
    stats = server.wait_for(lambda m: isinstance(m, ControllerStats) and m.request_id == request_id, since)
    return stats.packet_in.get(DPID, 0)


def _port_up(join: DatapathJoin) -> bool:
    return next(p.up for p in join.ports if p.port_no == 1)


def test_the_standby_keeps_its_view_and_takes_over_and_the_old_master_is_demoted_and_fenced(pair):
    server_a, server_b, log_a, log_b = pair
    join = server_a.wait_for(lambda m: isinstance(m, DatapathJoin) and m.dpid == DPID)
    assert not _port_up(join)  # an internal port is down until its interface is set up
    wait_for(lambda: "0000000000c10001: slave (generation 10)" in log_b.read_text(), 10, 0.1)
    wait_for(lambda: "0000000000c10001: master (generation 10)" in log_a.read_text(), 10, 0.1)
    # The active controller writes; the one standing by says nothing to its server.
    server_a.send(TableMod(DPID, add=(Flow(0, 5, match(in_port=1), (output(1),)),)))
    wait_for(lambda: any("priority=5" in f for f in _flows()), 10, 0.1)
    # The port comes up while B stands by: port status reaches A (reported) and B (kept).
    sh("ip", "link", "set", PORT, "up")
    server_a.wait_for(lambda m: isinstance(m, PortChange) and m.port.up)
    assert not [m for m in server_b.received if not isinstance(m, Hello) and type(m).__name__ != "Proof"]
    # A packet to the controller goes to the master: the slave is sent no packet-in.
    server_a.send(TableMod(DPID, add=(Flow(0, 9, match(in_port=1, eth_type=0x88B5), (CONTROLLER,)),)))
    wait_for(lambda: any("priority=9" in f for f in _flows()), 10, 0.1)
    with raw_socket(PORT) as sock:
        sock.send(frame(b"to-the-master"))
    wait_for(lambda: _packet_ins(server_a, 1) >= 1, 10, 0.2)
    # B is elected in term 11: it asks for mastership and reports the datapath as it is now.
    server_b.send(ControllerRole(True, TERM + 1))
    join = server_b.wait_for(lambda m: isinstance(m, DatapathJoin) and m.dpid == DPID)
    assert _port_up(join)
    wait_for(lambda: "0000000000c10001: master (generation 11)" in log_b.read_text(), 10, 0.1)
    assert _packet_ins(server_b, 2) == 0  # none while it was slave
    # The switch demoted A and said so (ONF role status): A stops writing, though its
    # server has not told it (as if A were cut off from the server).
    wait_for(lambda: "another controller is master (generation 11)" in log_a.read_text(), 10, 0.1)
    server_a.send(TableMod(DPID, add=(Flow(0, 6, match(in_port=1), (output(1),)),)))
    wait_for(lambda: "dropped: this controller is not its master" in log_a.read_text(), 10, 0.1)
    # A asking for mastership again with its old term is refused as stale.
    server_a.send(ControllerRole(True, TERM))
    wait_for(lambda: "refused role master in term 10: a newer term holds it" in log_a.read_text(), 10, 0.1)
    server_a.send(TableMod(DPID, add=(Flow(0, 7, match(in_port=1), (output(1),)),)))
    # B, the master, writes.
    server_b.send(TableMod(DPID, add=(Flow(0, 8, match(in_port=1), (output(1),)),)))
    wait_for(lambda: any("priority=8" in f for f in _flows()), 10, 0.1)
    flows = _flows()
    assert not any("priority=6" in f or "priority=7" in f for f in flows), flows
