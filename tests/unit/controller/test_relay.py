"""The slow path without a switch: packet-ins relayed, reported, dropped and counted."""

from __future__ import annotations

from routeflow.controller.actions import PacketOut
from routeflow.controller.discovery import Prober
from routeflow.controller.relay import MAX_RELAY, SlowPath
from routeflow.protocol import lldp, mapping
from routeflow.protocol.messages import ControllerStats, DiscoveryPlan, LinkChange, MappingSeen, RelayEntry, RelayMap

S1, S2, RFVS = 0x1, 0x2, 0x7266
MAC = "02:00:00:00:00:01"
FRAME = bytes.fromhex("0a0000000001" "020000000001" "0800") + b"\x45" + b"\0" * 50
CONNECTED = {S1, S2, RFVS}


def slow_path() -> SlowPath:
    path = SlowPath(Prober())
    path.rfvs = frozenset({RFVS})
    path.set_map(RelayMap((RelayEntry(S1, 1, RFVS, 10), RelayEntry(S1, 2, RFVS, 11))))
    return path


def receive(path: SlowPath, dpid: int, port: int | None, data: bytes = FRAME, total_len: int | None = None,
            connected=CONNECTED, now: float = 0.0):
    return path.receive(dpid, port, data, len(data) if total_len is None else total_len, connected, now)


def test_relay_both_ways_and_count():
    path = slow_path()
    assert receive(path, S1, 2) == [PacketOut(RFVS, 11, FRAME, relayed=True)]
    assert receive(path, RFVS, 10) == [PacketOut(S1, 1, FRAME, relayed=True)]
    path.relayed(RFVS)
    path.relayed(S1)
    assert path.stats(5, {S1: 1}) == ControllerStats(5, {S1: 1, RFVS: 1}, {RFVS: 1, S1: 1},
                                                     packet_in_by_kind={S1: {"ip": 1}, RFVS: {"ip": 1}},
                                                     refused={S1: 1})


def test_a_new_map_replaces_the_old():
    path = slow_path()
    path.set_map(RelayMap((RelayEntry(S1, 3, RFVS, 11),)))
    assert receive(path, S1, 1) == []
    assert receive(path, S1, 3) == [PacketOut(RFVS, 11, FRAME, relayed=True)]


def test_what_cannot_be_relayed_is_dropped_and_counted():
    path = slow_path()
    assert receive(path, S1, 3) == []  # no relay entry
    assert receive(path, S1, 1, connected={S1}) == []  # its RFVS is not connected
    assert receive(path, S1, 1, total_len=1500) == []  # truncated: the switch buffered the rest
    assert receive(path, S1, 1, FRAME + bytes(MAX_RELAY - len(FRAME) + 1)) == []  # too large for a packet-out
    assert receive(path, S1, None, b"") == []  # malformed: no in_port
    assert receive(path, RFVS, 10, b"\x01") == [PacketOut(S1, 1, b"\x01", relayed=True)]  # short, but whole
    assert path.dropped == {S1: 5}
    assert path.packet_in == {S1: 5, RFVS: 1}
    assert path.packet_in_kinds == {(S1, "ip"): 4, (RFVS, "other"): 1}, "a malformed packet-in has no kind"
    assert receive(path, S1, 1, FRAME + bytes(MAX_RELAY - len(FRAME))) != []  # the largest that fits


def test_mapping_packets_are_reported_not_relayed():
    path = slow_path()
    assert receive(path, RFVS, 11, mapping.encode("rA", "eth2", "02:00:00:00:00:02")) == [
        MappingSeen(RFVS, 11, "rA", "eth2")]
    # bad version; a name no interface can have (the server would hang up on the whole link)
    for bad in (FRAME[:12] + b"\x0a\x0a" + b"RFMP\x09", mapping.encode("rA", "eth 2/x", "02:00:00:00:00:02"),
                mapping.encode("rA", "a" * 16, "02:00:00:00:00:02")):
        assert receive(path, RFVS, 11, bad) == []
    assert path.dropped == {RFVS: 3}
    # from a switch port, a mapping frame is just traffic
    frame = mapping.encode("rA", "eth2", "02:00:00:00:00:02")
    assert receive(path, S1, 1, frame) == [PacketOut(RFVS, 10, frame, relayed=True)]


def test_probes_between_switches_go_to_the_prober():
    path = slow_path()
    path.prober.plan(DiscoveryPlan((S1, S2), interval=1.0), {}, now=0.0)
    probe = lldp.build_probe(S1, 2, "02:00:00:00:00:03")
    assert receive(path, S2, 1, probe, now=0.5) == [LinkChange(S1, 2, S2, 1, True)]
    assert receive(path, S2, 1, probe, now=0.6) == []
    assert path.dropped == {}
    assert receive(path, S2, 1, lldp.build_probe(0x9, 1, MAC)) == [] and path.dropped == {S2: 1}
    # LLDP from a VM is the VM's own: relayed like any other frame
    assert receive(path, RFVS, 10, probe) == [PacketOut(S1, 1, probe, relayed=True)]
    assert path.packet_in_kinds[S2, "lldp"] == 3


def tagged(frame: bytes, vid: int) -> bytes:
    return frame[:12] + b"\x81\x00" + vid.to_bytes(2, "big") + frame[12:]


def test_a_vlan_sub_interface_is_relayed_by_port_and_tag_and_its_tag_comes_off_and_back():
    path = SlowPath(Prober())
    path.rfvs = frozenset({RFVS})
    path.set_map(RelayMap((RelayEntry(S1, 3, RFVS, 20, vlan=10), RelayEntry(S1, 3, RFVS, 21, vlan=20),
                           RelayEntry(S1, 1, RFVS, 10))))
    assert receive(path, S1, 3, tagged(FRAME, 10)) == [PacketOut(RFVS, 20, FRAME, relayed=True)]
    assert receive(path, S1, 3, tagged(FRAME, 0x2000 | 20)) == [PacketOut(RFVS, 21, FRAME, relayed=True)]  # PCP kept out
    assert receive(path, RFVS, 21, FRAME) == [PacketOut(S1, 3, tagged(FRAME, 20), relayed=True)]
    assert receive(path, S1, 3, tagged(FRAME, 30)) == []  # a VLAN nobody owns
    assert receive(path, S1, 3, FRAME) == []  # untagged on a port of VLANs
    # an untagged port's frames go as they came, tagged or not
    assert receive(path, S1, 1, tagged(FRAME, 10)) == [PacketOut(RFVS, 10, tagged(FRAME, 10), relayed=True)]
    assert receive(path, S1, 3, tagged(FRAME, 0)) == []  # priority-tagged: VLAN 0 is no sub-interface
