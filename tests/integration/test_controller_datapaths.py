"""Two OpenFlow connections claiming one datapath id: a real Open vSwitch bridge and an impostor.

The controller runs as its own process for a fake RF-Server. The impostor is a
TCP socket speaking just enough OpenFlow 1.3 for os-ken's handshake. When it
claims the id of the connected bridge ``tcd-s1``, the controller must ask the
bridge whether it lives, find it does, and close the impostor without a word
to it, leaving the bridge connected and its flows as they were. When the
impostor came first and stays silent, the bridge takes its place.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc
from tests.fakeserver import FakeServer
from tests.processes import sh, start_controller, stop_process

from routeflow.harness import wait_for
from routeflow.model import Flow, match, output
from routeflow.protocol import auth
from routeflow.protocol.messages import (
    PROTOCOL_VERSION,
    DatapathJoin,
    DatapathLeave,
    Hello,
    TableMod,
    Welcome,
)

pytestmark = pytest.mark.integration

OF_PORT = 16673
DPID = 0x0000_0000_00D0_0001
BRIDGE = "tcd-s1"
PORT = "tcd-s1-p1"


def remove_bridge() -> None:
    sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE, check=False)


@pytest.fixture
def controller(tmp_path: Path, ovs_running: None) -> Iterator[tuple[FakeServer, Path]]:
    """The controller, for a fake server, and the path of its log; the bridge removed afterwards."""
    remove_bridge()  # leftovers of an interrupted run
    server = FakeServer(tmp_path / "server.sock", Welcome(PROTOCOL_VERSION), keys=auth.KEY_DIR)
    log = tmp_path / "controller.log"
    proc = start_controller(server.address, OF_PORT, log)
    try:
        server.wait_for(lambda m: isinstance(m, Hello))
        yield server, log
    finally:
        try:
            remove_bridge()
        finally:
            stop_process(proc)
            server.close()
            print(log.read_text()[-5000:])


def add_bridge(server: FakeServer) -> DatapathJoin:
    """The bridge, with one port, connected to the controller; its join as the server heard it."""
    since = server.mark()
    sh("ovs-vsctl", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
       "fail_mode=secure", "protocols=OpenFlow13", f"other-config:datapath-id={DPID:016x}",
       "--", "add-port", BRIDGE, PORT, "--", "set", "interface", PORT, "type=internal", "ofport_request=1",
       "--", "set-controller", BRIDGE, f"tcp:127.0.0.1:{OF_PORT}")
    join = server.wait_for(lambda m: isinstance(m, DatapathJoin) and m.dpid == DPID and m.ports, since)
    wait_for(bridge_connected, 10, 0.05)  # a moment after the fact
    return join


def flows() -> str:
    return sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", BRIDGE).stdout


def bridge_connected() -> bool:
    """Whether Open vSwitch has the bridge connected to its controller."""
    (uuid,) = sh("ovs-vsctl", "get", "bridge", BRIDGE, "controller").stdout.strip("[]\n").split(", ")
    return sh("ovs-vsctl", "get", "controller", uuid, "is_connected").stdout.strip() == "true"


def connect_impostor() -> socket.socket:
    """A connection to the controller's OpenFlow port, once it listens (a moment after it greets the server)."""
    end = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(("127.0.0.1", OF_PORT), timeout=15)
        except ConnectionRefusedError:
            assert time.monotonic() < end, "the controller does not listen"
            time.sleep(0.1)


def read_message(sock: socket.socket) -> tuple[int, int] | None:
    """(type, xid) of the next OpenFlow message; None at the end of the stream."""
    header = sock.recv(ofp.OFP_HEADER_SIZE, socket.MSG_WAITALL)
    if len(header) < ofp.OFP_HEADER_SIZE:
        return None
    _, kind, length, xid = struct.unpack(ofp.OFP_HEADER_PACK_STR, header)
    sock.recv(length - ofp.OFP_HEADER_SIZE, socket.MSG_WAITALL)
    return kind, xid


def reply(kind: int, xid: int, body: bytes) -> bytes:
    return struct.pack(ofp.OFP_HEADER_PACK_STR, ofp.OFP_VERSION, kind, ofp.OFP_HEADER_SIZE + len(body), xid) + body


def impostor_handshake(sock: socket.socket, dpid: int) -> None:
    """What a switch says until os-ken takes it for connected: hello, features, port description."""
    hello = parser.OFPHello(ProtocolDesc(ofp.OFP_VERSION))
    hello.serialize()
    sock.sendall(hello.buf)
    while True:
        message = read_message(sock)
        assert message is not None, "closed during the handshake"
        kind, xid = message
        if kind == ofp.OFPT_FEATURES_REQUEST:
            # os-ken writes no body for the messages a switch sends: packed from its layouts
            features = struct.pack(ofp.OFP_SWITCH_FEATURES_PACK_STR, dpid, 0, 1, 0, 0, 0)
            sock.sendall(reply(ofp.OFPT_FEATURES_REPLY, xid, features))
        elif kind == ofp.OFPT_MULTIPART_REQUEST:  # the port description, os-ken's last question
            no_ports = struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, ofp.OFPMP_PORT_DESC, 0)
            sock.sendall(reply(ofp.OFPT_MULTIPART_REPLY, xid, no_ports))
            return


def test_second_connection_for_a_live_datapath_is_refused(controller):
    server, log = controller
    add_bridge(server)
    server.send(TableMod(DPID, add=(Flow(0, 100, match(eth_type=0x88B5), (output(1),)),)))
    wait_for(lambda: "0x88b5" in flows(), 10, 0.05)
    before = flows()
    since = server.mark()

    with connect_impostor() as impostor:
        impostor_handshake(impostor, DPID)
        started = time.monotonic()
        after_handshake = []
        while (message := read_message(impostor)) is not None:
            after_handshake.append(message)
        refused_after = time.monotonic() - started
        impostor_port = impostor.getsockname()[1]

    assert after_handshake == []  # not a word from the controller (no config, no flows): only the close
    assert refused_after < 5
    assert re.search(rf"refused a second connection for datapath {DPID:016x} from 127\.0\.0\.1:{impostor_port}: "
                     r"the first \(127\.0\.0\.1:\d+\) is alive", log.read_text())
    # the bridge: its flows as they were, still the datapath the server's changes go to, never reconnected
    assert flows() == before
    server.send(TableMod(DPID, add=(Flow(0, 101, match(eth_type=0x88B6), (output(1),)),)))
    wait_for(lambda: "0x88b6" in flows(), 10, 0.05)
    assert bridge_connected()
    with server.lock:
        assert [m for m in server.received[since:] if isinstance(m, (DatapathJoin, DatapathLeave))] == []


def test_silent_first_connection_gives_way_to_the_switch(controller):
    server, log = controller
    with connect_impostor() as impostor:
        impostor_handshake(impostor, DPID)
        (kind, xid) = read_message(impostor)  # the controller's setup, ending with its port question
        while kind != ofp.OFPT_MULTIPART_REQUEST:
            kind, xid = read_message(impostor)
        impostor.sendall(reply(ofp.OFPT_MULTIPART_REPLY, xid, struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR,
                                                                          ofp.OFPMP_PORT_DESC, 0)))
        server.wait_for(lambda m: m == DatapathJoin(DPID, ()))
        since = server.mark()
        join = add_bridge(server)  # the impostor answers nothing from now on
        kinds = []
        while (message := read_message(impostor)) is not None:
            kinds.append(message[0])
        impostor_port = impostor.getsockname()[1]

    # Asked whether it lived (by the check, and by os-ken's keepalive each second), then closed.
    assert kinds and set(kinds) == {ofp.OFPT_ECHO_REQUEST}, kinds
    assert [p.name for p in join.ports] == [PORT]
    assert re.search(rf"datapath {DPID:016x}: the first connection \(127\.0\.0\.1:{impostor_port}\) did not answer "
                     r"in 2\.0 s; the one from 127\.0\.0\.1:\d+ replaces it", log.read_text())
    with server.lock:  # a reconnect to the server: the bridge's join replaced the impostor's, no leave
        assert [m for m in server.received[since:] if isinstance(m, (DatapathJoin, DatapathLeave))] == [join]
    server.send(TableMod(DPID, add=(Flow(0, 100, match(eth_type=0x88B5), (output(1),)),)))
    wait_for(lambda: "0x88b5" in flows(), 10, 0.05)


def test_a_switch_that_hangs_up_is_down_at_once(controller: tuple[FakeServer, Path]) -> None:
    """A bridge deleted closes its connection; the server hears the datapath leave within
    about the echo interval (os-ken ends a closed connection only when it sends on it)."""
    server, _ = controller
    add_bridge(server)
    since = server.mark()
    started = time.monotonic()
    remove_bridge()
    server.wait_for(lambda m: isinstance(m, DatapathLeave) and m.dpid == DPID, since)
    took = time.monotonic() - started
    print(f"datapath leave {took:.2f} s after the bridge went")
    assert took < 3.0, took
