"""Guards around os-ken's parsing of what a switch sends: table dumps left raw, and bounded parsers.

os-ken parses every message a switch sends in that switch's receive loop, before
any handler runs. :func:`install_raw_stats_replies` makes it hand the flow-stats
and group-desc replies over unparsed (routeflow decodes their bytes itself), and
:func:`install_parser_guards` keeps it to what it parses in bounded time. Both
patch os-ken's parser tables, process-wide and idempotently; the application
installs them when it starts, never at import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.openflow import structs
from routeflow.controller.openflow.checks import check_instructions, check_match, parse_checked
from routeflow.controller.openflow.errors import DecodeError
from routeflow.controller.openflow.structs import VERSION

# Assigned, not imported: CPython 3.11 compiles a method call on an imported name (which
# it takes for a module) to a slower attribute load, and these run for every message.
_HELLO_ELEM = structs.HELLO_ELEM
_MP_REPLY = structs.MP_REPLY
_U16 = structs.U16

LOG = logging.getLogger(__name__)

# -- os-ken: leave the table dumps to us ------------------------------------------------------


def _same(entry: Any) -> Any:
    return entry


class LazyBody(Sequence[Any]):
    """A multipart reply body os-ken parses only if somebody reads it.

    os-ken parses every entry of every reply into objects before any handler
    sees the message (about as slow as building them); routeflow decodes
    ``msg.buf`` itself, so the objects are made on demand for other readers.
    Each entry is checked whole before os-ken reads it: reading a malformed
    body raises :class:`DecodeError`.
    """

    def __init__(self, entry_cls: Any, buf: bytes, end: int) -> None:
        self._entry_cls, self._buf, self._end = entry_cls, buf, end
        self._items: list[Any] | None = None

    def _parsed(self) -> list[Any]:
        if self._items is None:
            items, offset = [], ofp.OFP_MULTIPART_REPLY_SIZE
            while offset < self._end:
                entry, offset = parse_checked(self._entry_cls, _same, self._buf, offset, self._end)
                items.append(entry)
            self._items = items
        return self._items

    def __getitem__(self, index: Any) -> Any:
        return self._parsed()[index]

    def __len__(self) -> int:
        return len(self._parsed())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._parsed())


_RAW_REPLIES = {
    ofp.OFPMP_FLOW: parser.OFPFlowStatsReply,
    ofp.OFPMP_GROUP_DESC: parser.OFPGroupDescStatsReply,
}


def install_raw_stats_replies() -> None:
    """Make os-ken hand over flow-stats and group-desc replies unparsed (:class:`LazyBody`).

    Process-wide (os-ken's parser table is), idempotent, and transparent to
    anybody reading ``msg.body``.
    """
    table = parser._MSG_PARSERS
    original = table[ofp.OFPT_MULTIPART_REPLY]
    if getattr(original, "routeflow_raw", False):
        return

    def multipart_reply(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int,
                        buf: bytes) -> Any:
        if msg_len >= ofp.OFP_MULTIPART_REPLY_SIZE and len(buf) >= msg_len:
            kind, flags = _MP_REPLY.unpack_from(buf, ofp.OFP_HEADER_SIZE)
            cls = _RAW_REPLIES.get(kind)
            if cls is not None:
                msg = cls(datapath)
                msg.set_headers(version, msg_type, msg_len, xid)
                msg.set_buf(buf)
                msg.type, msg.flags = kind, flags
                msg.body = LazyBody(cls.cls_stats_body_cls, msg.buf, msg_len)
                return msg
        return original(datapath, version, msg_type, msg_len, xid, buf)

    multipart_reply.routeflow_raw = True  # type: ignore[attr-defined]
    multipart_reply.original = original  # type: ignore[attr-defined]
    table[ofp.OFPT_MULTIPART_REPLY] = multipart_reply


# -- os-ken: parse only what it can parse in bounded time ---------------------------------------
#
# os-ken parses every message a switch sends in that switch's receive loop, before any
# handler runs, by the version in the message's own header, and most of its parsers trust
# the lengths they read. A truncated match raises an exception that ends the receive loop
# (and drops the switch); a zero-length element, property or entry loops forever.

#: What a switch may send in any version: the version is agreed through hellos, and errors
#: and echoes may come before (the types are numbered alike in every version).
_ANY_VERSION = frozenset({ofp.OFPT_HELLO, ofp.OFPT_ERROR, ofp.OFPT_ECHO_REQUEST, ofp.OFPT_ECHO_REPLY})
#: Messages nobody here reads whose os-ken parsers walk nested lengths unchecked.
_UNREAD = frozenset({ofp.OFPT_EXPERIMENTER, ofp.OFPT_QUEUE_GET_CONFIG_REPLY})
#: Multipart replies os-ken may parse: the raw ones, and those it reads at fixed sizes. The
#: others (group and meter statistics, meter configuration, table features, experimenter)
#: nest lengths os-ken trusts, and routeflow never asks for them.
_PARSED_REPLIES = frozenset(_RAW_REPLIES) | {
    ofp.OFPMP_DESC, ofp.OFPMP_AGGREGATE, ofp.OFPMP_TABLE, ofp.OFPMP_PORT_STATS, ofp.OFPMP_QUEUE,
    ofp.OFPMP_GROUP_FEATURES, ofp.OFPMP_METER_FEATURES, ofp.OFPMP_PORT_DESC,
}


def _hello_walks(buf: bytes, msg_len: int) -> bool:
    """Whether os-ken's walk of the hello elements (by length, ignoring padding) ends in the message."""
    offset = ofp.OFP_HEADER_SIZE
    while offset < msg_len:
        if offset + _HELLO_ELEM.size > msg_len:
            return False
        _, length = _HELLO_ELEM.unpack_from(buf, offset)
        if length < _HELLO_ELEM.size or offset + length > msg_len:
            return False
        offset += length
    return True


def _refusal(version: int, msg_type: int, msg_len: int, buf: bytes) -> str | None:
    """Why os-ken must not parse this message (``buf[:msg_len]``) at all, or None if it may."""
    if version != VERSION and msg_type not in _ANY_VERSION:
        return f"a version {version} message to a version {VERSION} controller"
    if msg_type in _UNREAD:
        return "unread message type"
    if msg_type == ofp.OFPT_MULTIPART_REPLY and msg_len >= ofp.OFP_MULTIPART_REPLY_SIZE:
        (kind,) = _U16.unpack_from(buf, ofp.OFP_HEADER_SIZE)
        if kind not in _PARSED_REPLIES:
            return f"unread multipart reply type {kind}"
    if msg_type == ofp.OFPT_FLOW_MOD and msg_len >= ofp.OFP_FLOW_MOD_SIZE:  # nonsense from a switch, but parsed
        try:
            check_instructions(buf, check_match(buf, ofp.OFP_FLOW_MOD_SIZE - ofp.OFP_MATCH_SIZE, msg_len),
                                msg_len)
        except DecodeError as exc:
            return str(exc)
    return None


def install_parser_guards() -> None:
    """Keep os-ken's parsers to messages they read in bounded time, and a bad one from costing the switch.

    Wraps os-ken's parser of every OpenFlow version (process-wide, idempotently):
    a message :func:`_refusal` names a reason for is dropped unparsed; a hello whose
    elements os-ken cannot walk is read by its header alone (the version negotiation
    of OpenFlow before 1.3.1); a message os-ken fails to parse is dropped. A message
    of a version os-ken has no parser for is dropped too, by a wrapper of
    ``ofproto_parser.msg`` itself (which would raise ``OFPUnknownVersion``). Each is
    logged with its reason; the switch stays connected.
    """
    table = ofproto_parser._MSG_PARSERS
    for version, original in list(table.items()):
        if not getattr(original, "routeflow_guarded", False):
            table[version] = _guarded(original)
    if not getattr(ofproto_parser.msg, "routeflow_guarded", False):
        # The receive loop looks it up in the module on every message, so replacing it there suffices.
        ofproto_parser.msg = _known_versions_only(ofproto_parser.msg)


def _dropped(datapath: Any, msg_type: int, msg_len: int, xid: int, reason: str) -> None:
    LOG.warning("switch %s: OpenFlow message type %d (xid %d, %d bytes) dropped: %s",
                getattr(datapath, "address", "?"), msg_type, xid, msg_len, reason)


def _known_versions_only(original: Callable[..., Any]) -> Callable[..., Any]:
    def msg(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: bytes) -> Any:
        if version not in ofproto_parser._MSG_PARSERS:
            _dropped(datapath, msg_type, msg_len, xid, f"no parser for OpenFlow version {version}")
            return None
        return original(datapath, version, msg_type, msg_len, xid, buf)

    msg.routeflow_guarded = True  # type: ignore[attr-defined]
    msg.original = original  # type: ignore[attr-defined]
    return msg


def _guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    def parse(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: bytes) -> Any:
        end = min(msg_len, len(buf))  # os-ken itself fails the message if the buffer is short
        reason = _refusal(version, msg_type, end, buf)
        if reason is None:
            if msg_type == ofp.OFPT_HELLO and not _hello_walks(buf, end):
                LOG.warning("switch %s: hello elements unreadable, reading its header only",
                            getattr(datapath, "address", "?"))
                msg_len, buf = ofp.OFP_HEADER_SIZE, buf[:ofp.OFP_HEADER_SIZE]
            try:
                return original(datapath, version, msg_type, msg_len, xid, buf)
            except Exception as exc:  # noqa: BLE001 - os-ken raises anything, and a truncated match ends the loop
                reason = f"unreadable: {exc!r}"
        _dropped(datapath, msg_type, msg_len, xid, reason)
        return None

    parse.routeflow_guarded = True  # type: ignore[attr-defined]
    parse.original = original  # type: ignore[attr-defined]
    return parse
