"""Target ``frames``: bytes -> ``lldp.parse_probe`` (None or a probe), ``mapping.decode`` (a
packet or ``MappingPacketError``), ``classify.traffic_kind``; probe and mapping packet encoders
round-trip."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import strategies as st

from fuzz import seeds
from fuzz.engine import Target
from fuzz.strategies import mutated
from fuzz.targets.common import MACS, packed, show_bytes, stage, unpacked
from routeflow.controller.classify import traffic_kind
from routeflow.protocol import lldp, mapping

KINDS = {"arp", "nd", "icmp", "icmpv6", "ospf", "tcp", "udp", "ip", "mapping", "lldp", "other"}


def check_frames(value: tuple[Any, ...]) -> None:
    kind = value[0]
    if kind == 0:
        data = value[1]
        probe = stage("lldp.parse_probe", lambda: lldp.parse_probe(data))
        assert probe is None or (isinstance(probe, tuple) and len(probe) == 2 and 0 <= probe[0] < 1 << 64
                                 and probe[1] >= 0), probe
        try:
            packet = stage("mapping.decode", lambda: mapping.decode(data))
            assert isinstance(packet, mapping.MappingPacket) and packet.vm and packet.ifname, packet
        except mapping.MappingPacketError:
            pass
        assert stage("traffic_kind", lambda: traffic_kind(data)) in KINDS
    elif kind == 1:
        _, dpid, port, mac = value
        data = lldp.build_probe(dpid, port, mac)
        assert lldp.parse_probe(data) == (dpid, port), data.hex()
        assert traffic_kind(data) == "lldp"
    else:
        _, vm, ifname, mac = value
        data = mapping.encode(vm, ifname, mac)
        assert mapping.decode(data) == (vm, ifname), data.hex()
        assert traffic_kind(data) == "mapping"


_NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(lambda s: len(s.encode()) < 256)


def frames() -> Target:
    frame_seeds = seeds.frames()
    tokens = [struct.pack("!H", t) for t in (0x88CC, 0x0A0A, 0x8100, 0x0800, 0x86DD, 0x0806)] + [b"RFMP\x01",
                                                                                               b"dpid:"]
    mac = st.sampled_from(MACS)
    return Target(
        name="frames",
        doc="lldp.parse_probe, mapping.decode and classify.traffic_kind on packet-in frames; encoders round-trip",
        strategy=st.one_of(
            mutated(frame_seeds, orders=("big",), tokens=tokens).map(lambda b: (0, b)),
            mutated(frame_seeds, orders=("big",), tokens=tokens).map(lambda b: (0, b)),
            st.binary(max_size=80).map(lambda b: (0, b)),
            st.tuples(st.just(1), st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 32) - 1), mac),
            st.tuples(st.just(2), _NAME, _NAME, mac),
        ),
        check=check_frames,
        seeds=lambda: [(0, f) for f in frame_seeds] + [(1, 1, 3, MACS[0]), (2, "rA", "eth1", MACS[0])],
        dump=lambda v: packed(list(v)),
        load=lambda b: tuple(unpacked(b)),
        show=lambda v: f"(0, {show_bytes(v[1])})" if v[0] == 0 else repr(v),
    )
