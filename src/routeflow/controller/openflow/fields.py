"""The OXM fields the fast codec writes and reads: one table row per field, with a codec for its kind.

As os-ken's ``oxm_fields``/``type_desc``: a field is a name, an OXM number and
a :class:`FieldCodec` (an unsigned integer of some width, a MAC address, an
IPv4 or IPv6 address) that writes a value as a TLV and reads one back. The
encoder, the decoder and the OXM headers all derive from :data:`FIELDS`.

A codec writes exactly the bytes os-ken serialises for the value the reference
codec would hand it, and reads what the reference codec reads from os-ken's
parse; anything it would not write the same way raises :class:`Unsupported`.
"""

from __future__ import annotations

import abc
import ipaddress
import socket

from os_ken.ofproto import ofproto_v1_3 as ofp

from routeflow.controller.openflow import structs
from routeflow.controller.openflow.errors import Unsupported
from routeflow.controller.openflow.memo import remember

# Assigned, not imported: CPython 3.11 compiles a method call on an imported name (which
# it takes for a module) to a slower attribute load, a cost on every entry.
_OXM_HDR = structs.OXM_HDR
_U32 = structs.U32

_inet_pton = socket.inet_pton
inet_ntoa = socket.inet_ntoa
_MAC_SEPARATORS = ":::::"
#: prefix length text -> prefix length
PREFIXLEN = {str(n): n for n in range(129)}
#: prefix length -> IPv4 netmask, as a number and as bytes; and back from the bytes
V4_MASKS = tuple(((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF) for n in range(33))
V4_MASK_BYTES = tuple(_U32.pack(m) for m in V4_MASKS)
V4_PREFIX_BY_MASK = {mask: n for n, mask in enumerate(V4_MASK_BYTES)}
PREFIX_SUFFIX = tuple(f"/{n}" for n in range(33))


class Field:
    """One OXM field: its name, number and codec, and its two headers (exact and masked)."""

    __slots__ = ("name", "number", "codec", "exact", "masked")

    def __init__(self, name: str, number: int, codec: FieldCodec) -> None:
        self.name, self.number, self.codec = name, number, codec
        self.exact = self._header(False)
        self.masked = self._header(True)

    def _header(self, masked: bool) -> bytes:
        width = self.codec.width
        length = width * 2 if masked else width
        return _OXM_HDR.pack(ofp.OFPXMC_OPENFLOW_BASIC << 16 | self.number << 9 | int(masked) << 8 | length)

    def unsupported(self, value: object, why: str = "") -> Unsupported:
        """The refusal of ``value`` for this field (``why``: what is wrong with it, if not its type)."""
        return Unsupported(f"{self.name}={value!r}{why}")


class FieldCodec(abc.ABC):
    """How values of one kind are written and read: the bytes of a TLV, the text of a value."""

    #: Bytes of a value (a mask is as long).
    width: int
    #: Whether a value's TLV repeats across entries, so that memoising it pays (all but addresses).
    memoise = True

    @abc.abstractmethod
    def tlv(self, field: Field, value: object) -> bytes:
        """The TLV of ``value`` in ``field``, as os-ken writes the reference codec's value."""

    @abc.abstractmethod
    def read(self, value: bytes, mask: bytes | None) -> str | int:
        """The canonical value of raw ``value`` (``mask`` if the TLV has one), as the reference codec reads it."""


class UInt(FieldCodec):
    """An unsigned big-endian integer of ``width`` bytes; masked ones read as ``"value/mask"``."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._limit = 1 << (8 * width)
        self._pack = {1: structs.U8.pack, 2: structs.U16.pack, 4: structs.U32.pack}[width]

    def tlv(self, field: Field, value: object) -> bytes:
        if type(value) is not int:  # bool and int subclasses take the reference path
            raise field.unsupported(value)
        if not 0 <= value < self._limit:
            raise field.unsupported(value, " out of range")
        return field.exact + self._pack(value)

    def read(self, value: bytes, mask: bytes | None) -> str | int:
        number = int.from_bytes(value, "big")
        if mask is None:
            return number
        return f"{number}/{int.from_bytes(mask, 'big')}"


class MacAddress(FieldCodec):
    """Six bytes written from ``aa:bb:cc:dd:ee:ff`` (either case), read in lower case."""

    width = 6

    def tlv(self, field: Field, value: object) -> bytes:
        if type(value) is not str:
            raise field.unsupported(value)
        value = value.lower()
        if len(value) != 17 or value[2::3] != _MAC_SEPARATORS:
            raise field.unsupported(value)
        try:
            raw = bytes.fromhex(value.replace(":", ""))
        except ValueError:
            raise field.unsupported(value) from None
        if len(raw) != 6:
            raise field.unsupported(value)
        return field.exact + raw

    def read(self, value: bytes, mask: bytes | None) -> str | int:
        text = value.hex(":")
        return text if mask is None else f"{text}/{mask.hex(':')}"


class IPAddress(FieldCodec):
    """An address, exact or as a prefix (``a/n``: written masked, host bits refused)."""

    memoise = False  # one per route
    family: int
    bits: int

    def tlv(self, field: Field, value: object) -> bytes:
        if type(value) is not str:
            raise field.unsupported(value)
        address, slash, length = value.partition("/")
        try:
            packed = _inet_pton(self.family, address)
        except (OSError, ValueError):
            raise field.unsupported(value) from None
        self._check_text(field, value, address)
        if not slash:
            return field.exact + packed
        prefixlen = PREFIXLEN.get(length)
        if prefixlen is None or prefixlen > self.bits:
            raise field.unsupported(value)  # netmask text, bad length: os-ken's way
        if prefixlen == self.bits:
            return field.exact + packed
        if int.from_bytes(packed, "big") & ~self.mask(prefixlen) & ((1 << self.bits) - 1):
            raise field.unsupported(value, " has host bits set")
        return field.masked + packed + self.mask_bytes(prefixlen)

    def _check_text(self, field: Field, value: str, address: str) -> None:
        """Refuse address text the reference codec writes otherwise."""

    def mask(self, prefixlen: int) -> int:
        """The netmask of a prefix length, as a number."""
        return ((1 << self.bits) - 1) ^ ((1 << (self.bits - prefixlen)) - 1)

    def mask_bytes(self, prefixlen: int) -> bytes:
        """The netmask of a prefix length, as bytes."""
        return self.mask(prefixlen).to_bytes(self.width, "big")


class IPv4Address(IPAddress):
    width, bits, family = 4, 32, socket.AF_INET

    def mask(self, prefixlen: int) -> int:
        return V4_MASKS[prefixlen]

    def mask_bytes(self, prefixlen: int) -> bytes:
        return V4_MASK_BYTES[prefixlen]

    def read(self, value: bytes, mask: bytes | None) -> str | int:
        if mask is None:
            return inet_ntoa(value)
        prefixlen = V4_PREFIX_BY_MASK.get(mask)
        if prefixlen is None:  # non-contiguous: readable rather than a failure
            return f"{inet_ntoa(value)}/{inet_ntoa(mask)}"
        if prefixlen == 32:
            return inet_ntoa(value)
        net = int.from_bytes(value, "big") & V4_MASKS[prefixlen]
        return f"{inet_ntoa(_U32.pack(net))}/{prefixlen}"


class IPv6Address(IPAddress):
    width, bits, family = 16, 128, socket.AF_INET6

    def _check_text(self, field: Field, value: str, address: str) -> None:
        if "." in address:
            raise field.unsupported(value)  # embedded IPv4: leave it to os-ken

    @staticmethod
    def _text(raw: bytes) -> str:
        return str(ipaddress.IPv6Address(raw))

    def read(self, value: bytes, mask: bytes | None) -> str | int:
        if mask is None:
            return self._text(value)
        hostmask = ~int.from_bytes(mask, "big") & ((1 << 128) - 1)
        if hostmask & (hostmask + 1):
            return f"{self._text(value)}/{self._text(mask)}"
        prefixlen = 128 - hostmask.bit_length()
        if prefixlen == 128:
            return self._text(value)
        return str(ipaddress.IPv6Network((int.from_bytes(value, "big") & ~hostmask, prefixlen)))


_UINT8, _UINT16, _UINT32 = UInt(1), UInt(2), UInt(4)
_MAC, _IPV4, _IPV6 = MacAddress(), IPv4Address(), IPv6Address()

#: Every field the fast codec writes and reads (the rest take the reference codec).
FIELDS: tuple[Field, ...] = tuple(Field(name, number, codec) for name, number, codec in (
    ("in_port", ofp.OFPXMT_OFB_IN_PORT, _UINT32),
    ("eth_dst", ofp.OFPXMT_OFB_ETH_DST, _MAC),
    ("eth_src", ofp.OFPXMT_OFB_ETH_SRC, _MAC),
    ("eth_type", ofp.OFPXMT_OFB_ETH_TYPE, _UINT16),
    ("vlan_vid", ofp.OFPXMT_OFB_VLAN_VID, _UINT16),
    ("ip_proto", ofp.OFPXMT_OFB_IP_PROTO, _UINT8),
    ("ipv4_src", ofp.OFPXMT_OFB_IPV4_SRC, _IPV4),
    ("ipv4_dst", ofp.OFPXMT_OFB_IPV4_DST, _IPV4),
    ("tcp_src", ofp.OFPXMT_OFB_TCP_SRC, _UINT16),
    ("tcp_dst", ofp.OFPXMT_OFB_TCP_DST, _UINT16),
    ("udp_src", ofp.OFPXMT_OFB_UDP_SRC, _UINT16),
    ("udp_dst", ofp.OFPXMT_OFB_UDP_DST, _UINT16),
    ("icmpv4_type", ofp.OFPXMT_OFB_ICMPV4_TYPE, _UINT8),
    ("icmpv4_code", ofp.OFPXMT_OFB_ICMPV4_CODE, _UINT8),
    ("ipv6_src", ofp.OFPXMT_OFB_IPV6_SRC, _IPV6),
    ("ipv6_dst", ofp.OFPXMT_OFB_IPV6_DST, _IPV6),
    ("icmpv6_type", ofp.OFPXMT_OFB_ICMPV6_TYPE, _UINT8),
    ("icmpv6_code", ofp.OFPXMT_OFB_ICMPV6_CODE, _UINT8),
))
BY_NAME = {f.name: f for f in FIELDS}
#: OXM field number -> (field, width of a value, its codec's reader), bound once for :func:`decode_tlv`
_READERS = {f.number: (f, f.codec.width, f.codec.read) for f in FIELDS}

#: A route's match: eth_type=0x0800 then a masked ipv4_dst (the prefix, then its netmask).
ROUTE_MATCH_HEAD = BY_NAME["eth_type"].exact + b"\x08\x00" + BY_NAME["ipv4_dst"].masked
#: Its ``ofp_match`` length: type and length, the head, address and netmask.
ROUTE_MATCH_LEN = 4 + len(ROUTE_MATCH_HEAD) + 8


def encode_field(name: str, value: object) -> bytes:
    """One exact or masked OXM TLV; raise :class:`Unsupported` for anything else."""
    field = BY_NAME.get(name)
    if field is None:
        raise Unsupported(f"match field {name!r}")
    return field.codec.tlv(field, value)


_field_cache: dict[tuple[str, object], bytes] = {}


def cached_field(name: str, value: object) -> bytes:
    """:func:`encode_field`, memoised for the fields whose values repeat (not addresses)."""
    field = BY_NAME.get(name)
    # Only exact ints and strings: True and 1.0 would find the TLV of 1.
    if field is None or not field.codec.memoise or type(value) not in (int, str):
        return encode_field(name, value)
    key = (name, value)
    tlv = _field_cache.get(key)
    if tlv is None:
        tlv = remember(_field_cache, key, field.codec.tlv(field, value))
    return tlv


def decode_tlv(buf: bytes, offset: int, end: int) -> tuple[Field, str | int, int]:
    """(field, canonical value, next offset) of the OXM TLV at ``offset``; :class:`Unsupported` if not ours."""
    if offset + 4 > end:
        raise Unsupported("truncated OXM")
    (header,) = _OXM_HDR.unpack_from(buf, offset)
    length = header & 0xFF
    nxt = offset + 4 + length
    if header >> 16 != ofp.OFPXMC_OPENFLOW_BASIC or nxt > end:
        raise Unsupported("OXM class")
    spec = _READERS.get(header >> 9 & 0x7F)
    if spec is None:
        raise Unsupported("OXM field")
    field, width, read = spec
    masked = header & 0x100
    if length != (width * 2 if masked else width):
        raise Unsupported("OXM length")
    start = offset + 4
    mask = buf[start + width:nxt] if masked else None
    return field, read(buf[start:start + width], mask), nxt
