"""What the fuzz targets share: msgpack and byte helpers, and values of the model's types
(mostly ones the seed configs know) as hypothesis strategies and hints for ``fuzz.strategies``."""

from __future__ import annotations

import struct
import typing
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import strategies as st

from fuzz.strategies import any_int
from routeflow import model

# -- helpers -----------------------------------------------------------------------------------

_PACK = msgspec.msgpack.Encoder()
_UNPACK = msgspec.msgpack.Decoder()


def packed(value: Any) -> bytes:
    return _PACK.encode(value)


def unpacked(data: bytes) -> Any:
    return _UNPACK.decode(data)


def show_bytes(data: bytes) -> str:
    return f"bytes.fromhex({data.hex()!r})  # {len(data)} bytes"


def stage(name: str, call: Callable[[], Any]) -> Any:
    """``call()``; an exception says which call of the check raised it."""
    try:
        return call()
    except Exception as exc:
        exc.add_note(f"[fuzz] raised by: {name}")
        raise


def pattern(annotated: Any) -> str:
    return str(typing.get_args(annotated)[1].pattern)


def frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


# -- values of the model's types, mostly ones the seed configs know ----------------------------

IP_POOL = ["172.31.1.1", "172.31.1.2", "172.31.2.1", "172.31.2.2", "172.31.2.99", "10.0.12.1", "10.0.12.2",
           "2001:db8:2::2", "2001:db8:1::1", "fe80::9", "fe80::1", "0.0.0.0", "::", "255.255.255.255",
           "224.0.0.5", "::ffff:10.0.0.1", "1:2::3.4.5.6", "0:0:0:0:0:0:0:1", "10.255.0.1"]
PREFIX_POOL = ["172.31.1.0/24", "172.31.2.0/24", "10.9.0.0/16", "0.0.0.0/0", "::/0", "2001:db8:9::/48",
               "172.31.1.2/32", "172.31.1.1/24", "10.0.12.1/24", "fe80::/64", "ff02::/16", "224.0.0.0/4",
               "2001:db8:2::1/64", "10.255.0.1/32", "::ffff:10.0.0.0/104", "172.31.2.99/32", "10.0.0.0/8"]
IFNAMES = ["eth1", "eth2", "eth3", "lo", "eth9"]
MACS = ["02:00:00:00:00:01", "0a:00:00:00:00:01", "02:52:46:01:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00",
        "01:00:5e:00:00:05"]
DPIDS = [1, 2, 3, 0x7266, 0]
PORT_NUMBERS = [1, 2, 3, 9, 11, 12, 100, 0xFFFFFFFE]

IP_ADDRESSES = st.one_of(st.sampled_from(IP_POOL), st.ip_addresses().map(str),
                         st.from_regex(pattern(model.IpAddress), fullmatch=True))


@st.composite
def _prefix(draw: Any) -> str:
    address = draw(st.ip_addresses())
    return f"{address}/{draw(st.integers(0, address.max_prefixlen))}"


PATTERN_HINTS = {
    pattern(model.IpAddress): IP_ADDRESSES,
    pattern(model.IpWithLength): st.one_of(st.sampled_from(PREFIX_POOL), _prefix(),
                                           st.from_regex(pattern(model.IpWithLength), fullmatch=True)),
    pattern(model.IfName): st.one_of(st.sampled_from(IFNAMES), st.from_regex(pattern(model.IfName),
                                                                             fullmatch=True)),
    pattern(model.Mac): st.one_of(st.sampled_from(MACS), st.from_regex(pattern(model.Mac), fullmatch=True)),
    pattern(model.ProtoName): st.one_of(st.sampled_from(["", "kernel", "ospf", "bgp", "static", "186"]),
                                        st.from_regex(pattern(model.ProtoName), fullmatch=True)),
}
_DPID = st.one_of(st.sampled_from(DPIDS), any_int)
_PORT = st.one_of(st.sampled_from(PORT_NUMBERS), any_int)
FIELD_HINTS: dict[str, st.SearchStrategy[Any]] = {
    "dpid": _DPID, "rfvs_dpid": _DPID, "src_dpid": _DPID, "dst_dpid": _DPID,
    "port_no": _PORT, "rfvs_port": _PORT, "src_port": _PORT, "dst_port": _PORT, "port": _PORT,
    "request_id": st.one_of(st.integers(0, 8), any_int),
    "vm": st.one_of(st.sampled_from(["rA", "rB", "rZ"]), st.text(max_size=12)),
    "PortDesc.mac": st.one_of(st.sampled_from(MACS), st.text(max_size=20)),
    "table": st.one_of(st.integers(0, 3), any_int),
    "priority": st.one_of(st.sampled_from([0, 100, 200, 400, 1024, 1032]), any_int),
}
