"""Capture the golden flow-stats and group-desc replies of ``ovs-dump.json`` from Open vSwitch.

    flock /run/routeflow-stack.lock .venv/bin/python tests/unit/controller/golden/capture.py \\
        tests/unit/controller/golden/ovs-dump.json

Needs root and a running Open vSwitch. Makes a bridge ``tfc-gold`` whose
controller is this script (a bare-bones one on 127.0.0.1:16654), installs
routeflow's flows and groups with :mod:`routeflow.controller.openflow.fast_encode`, adds a few
foreign entries with ``ovs-ofctl``, then records the raw multipart replies to a
table dump and removes the bridge.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import subprocess
import sys

import msgspec
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.openflow import fast_encode, reference
from routeflow.model import CONTROLLER, DEC_TTL, Flow, Group, group, match, output, set_field
from routeflow.protocol.messages import TableMod

BR, PORT = "tfc-gold", 16654
MAC_R, MAC_A, MAC_B = "02:00:00:00:0c:01", "0a:00:00:00:0c:0a", "0a:00:00:00:0c:0b"
ECMP = Group(0x1234, "select", ((set_field("eth_src", MAC_R), set_field("eth_dst", MAC_A), output(1)),
                                (set_field("eth_src", MAC_R), set_field("eth_dst", MAC_B), output(2))))
IND = Group(7, "indirect", ((output(3),),))
ALL = Group(8, "all", ((output(1),), (CONTROLLER,)))
FLOWS = [
    Flow(0, 400, match(eth_type=0x806), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=89), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=6, tcp_dst=179), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=6, tcp_src=179, ipv4_src="10.0.0.0/8"), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=17, udp_dst=3784), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ip_proto=1, icmpv4_type=8), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x86DD, ip_proto=58, icmpv6_type=135, ipv6_dst="ff02::1:ff00:0/104"), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x86DD, ipv6_src="2001:db8::1", ipv6_dst="2001:db8::2"), (CONTROLLER,)),
    Flow(0, 400, match(eth_type=0x800, ipv4_dst="224.0.0.0/24"), (CONTROLLER,)),
    Flow(0, 200, match(in_port=1, eth_dst=MAC_R), goto=1),
    Flow(0, 200, match(in_port=2, eth_dst=MAC_R), goto=1),
    Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (DEC_TTL, group(ECMP.group_id))),
    Flow(1, 1032, match(eth_type=0x800, ipv4_dst="10.0.0.5"),
         (DEC_TTL, set_field("eth_src", MAC_R), set_field("eth_dst", MAC_A), output(2))),
    Flow(1, 1016, match(eth_type=0x800, ipv4_dst="10.9.0.0/16")),
    Flow(1, 1064, match(eth_type=0x86DD, ipv6_dst="2001:db8:1::/48"), (DEC_TTL, output(1))),
    Flow(1, 1, match(eth_type=0x800, ipv4_dst="10.128.0.0/9"), (CONTROLLER,)),
    Flow(1, 0, (), (CONTROLLER,)),
] + [Flow(1, 1020, match(eth_type=0x800, ipv4_dst=f"172.{16 + i // 256}.{i % 256}.0/24"),
          (DEC_TTL, set_field("eth_src", MAC_R), set_field("eth_dst", MAC_B if i % 2 else MAC_A), output(i % 2 + 1)))
     for i in range(600)]  # several replies' worth
FOREIGN_FLOWS = [
    "table=2,priority=7,dl_vlan=5,actions=pop_vlan,output:1",
    "table=2,priority=8,ip,nw_dst=10.0.0.0/255.0.255.0,actions=write_actions(output:1)",
    "table=2,priority=9,tcp,tp_dst=0x100/0xff00,actions=set_field:10.0.0.1->ip_dst,output:2",
    "table=2,priority=10,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=set_queue:1,output:3",
    "table=2,priority=11,ipv6,ipv6_dst=2001:db8::/ffff:ffff::ffff,actions=clear_actions",
    "table=2,priority=12,arp,arp_op=1,actions=CONTROLLER:128",
    "table=2,priority=13,metadata=0x5/0xff,actions=write_metadata:0x1/0xff,goto_table:3",
]
FOREIGN_GROUPS = ["group_id=20,type=all,bucket=push_vlan:0x8100,set_field:4101->vlan_vid,output:1"]

def sh(*a, check=True):
    return subprocess.run(a, check=check, capture_output=True, text=True)

def recv_msg(sock):
    hdr = b""
    while len(hdr) < 8:
        data = sock.recv(8 - len(hdr))
        assert data, "closed"
        hdr += data
    _, kind, length, xid = struct.unpack("!BBHI", hdr)
    body = b""
    while len(body) < length - 8:
        data = sock.recv(length - 8 - len(body))
        assert data, "closed"
        body += data
    return kind, xid, hdr + body

def write(path, data):
    """Compact JSON, one flow and one reply a line."""
    parts = ['{\n "about": %s,' % json.dumps(data["about"])]
    for key in ("foreign_flows", "foreign_groups"):
        parts.append(' "%s": %s,' % (key, json.dumps(data[key])))
    parts.append(' "groups": %s,' % json.dumps(data["groups"], separators=(",", ":")))
    parts.append(' "flows": [\n  ' + ",\n  ".join(json.dumps(f, separators=(",", ":")) for f in data["flows"])
                 + "\n ],")
    parts.append(' "replies": [\n  ' + ",\n  ".join(json.dumps(r) for r in data["replies"]) + "\n ]\n}\n")
    with open(path, "w") as fh:
        fh.write("\n".join(parts))


def main(out_path):
    sh("ovs-vsctl", "--if-exists", "del-br", BR)
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", PORT))
    lst.listen()
    lst.settimeout(20)
    try:
        sh("ovs-vsctl", "add-br", BR, "--", "set", "bridge", BR, "datapath_type=netdev", "fail_mode=secure",
           "protocols=OpenFlow13", "other-config:datapath-id=00000000000c0a1d", "--", "set-controller", BR,
           f"tcp:127.0.0.1:{PORT}")
        sock, _ = lst.accept()
        sock.settimeout(20)
        sock.sendall(struct.pack("!BBHI", 4, ofp.OFPT_HELLO, 8, 1))
        xids = itertools.count(100).__next__
        for f in FOREIGN_GROUPS:
            sh("ovs-ofctl", "-O", "OpenFlow13", "add-group", BR, f)
        mod = TableMod(1, add=tuple(FLOWS), group_add=(ECMP, IND, ALL))
        chunks, count, errors = fast_encode.encode_table_mod(mod, xids)
        assert not errors, errors
        for c in chunks:
            sock.sendall(c)
        last_barrier = 100 + count - 1
        while True:
            kind, xid, raw = recv_msg(sock)
            if kind == ofp.OFPT_ECHO_REQUEST:
                sock.sendall(struct.pack("!BBHI", 4, ofp.OFPT_ECHO_REPLY, len(raw), xid) + raw[8:])
            assert kind != ofp.OFPT_ERROR, raw.hex()
            if kind == ofp.OFPT_BARRIER_REPLY and xid == last_barrier:
                break
        for f in FOREIGN_FLOWS:
            sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", BR, f)
        for req in (parser.OFPFlowStatsRequest(reference.STANDALONE, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                               0, 0, parser.OFPMatch()),
                    parser.OFPGroupDescStatsRequest(reference.STANDALONE, 0)):
            req.set_xid(xids())
            req.serialize()
            sock.sendall(bytes(req.buf))
        replies, done = [], set()
        while len(done) < 2:
            kind, xid, raw = recv_msg(sock)
            if kind == ofp.OFPT_ECHO_REQUEST:
                sock.sendall(struct.pack("!BBHI", 4, ofp.OFPT_ECHO_REPLY, len(raw), xid) + raw[8:])
            assert kind != ofp.OFPT_ERROR, raw.hex()
            if kind == ofp.OFPT_MULTIPART_REPLY:
                replies.append(raw.hex())
                mp, flags = struct.unpack_from("!HH", raw, 8)
                if not flags & 1:
                    done.add(mp)
        text = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", BR).stdout
        data = {
            "about": "Flow-stats and group-desc multipart replies (hex, whole messages) from Open vSwitch "
                     + sh("ovs-vsctl", "--version").stdout.split("\n")[0]
                     + " after routeflow installed `flows` and `groups` and ovs-ofctl added `foreign_flows` "
                       "and `foreign_groups`. Captured by a throwaway controller on a tfc-gold bridge.",
            "flows": msgspec.to_builtins(FLOWS), "groups": msgspec.to_builtins([ECMP, IND, ALL]),
            "foreign_flows": FOREIGN_FLOWS, "foreign_groups": FOREIGN_GROUPS,
            "replies": replies,
        }
        write(out_path, data)
        print(len(replies), "replies;", text.count("\n"), "lines in dump-flows")
    finally:
        sh("ovs-vsctl", "--if-exists", "del-br", BR, check=False)
        lst.close()


if __name__ == "__main__":
    main(sys.argv[1])
