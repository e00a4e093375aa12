"""Discovery probes: what one port sends, another reads back."""

import random

import pytest

from routeflow.protocol import lldp


def test_probe_round_trip():
    frame = lldp.build_probe(0x1234_5678_9ABC_DEF0, 4094, "02:52:46:01:00:03")
    assert frame[:6] == lldp.DESTINATION and frame[6:12] == bytes.fromhex("025246010003")
    assert lldp.parse_probe(frame) == (0x1234_5678_9ABC_DEF0, 4094)


@pytest.mark.parametrize("frame", [
    b"",
    bytes(14),
    lldp.DESTINATION + bytes(6) + b"\x88\xcc",                              # no TLVs
    lldp.DESTINATION + bytes(6) + b"\x88\xcc\x02\x07\x04abcdef\x00\x00",   # MAC chassis id: someone else's LLDP
    lldp.build_probe(1, 2, "02:00:00:00:00:01")[:-12],                      # cut in the middle
    lldp.build_probe(1, 2, "02:00:00:00:00:01").replace(b"dpid:", b"dpix:"),
])
def test_anything_else_is_not_a_probe(frame):
    assert lldp.parse_probe(frame) is None


def test_random_bytes_never_raise():
    rng = random.Random(7)
    probe = lldp.build_probe(5, 6, "02:00:00:00:00:01")
    for _ in range(2000):
        frame = bytearray(probe)
        for _ in range(rng.randint(1, 6)):
            frame[rng.randrange(12, len(frame))] = rng.randrange(256)
        result = lldp.parse_probe(bytes(frame[:rng.randint(0, len(frame))]))
        assert result is None or isinstance(result, tuple)
