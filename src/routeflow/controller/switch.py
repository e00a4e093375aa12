"""What the RF-Controller reads from an os-ken datapath, and does to one: who is at the
other end, which port is which, what its table dump replies hold and its error messages
say, and how to hang up on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from routeflow.controller.openflow import fast_decode, reference
from routeflow.model import Flow, Group, PortDesc
from routeflow.protocol import pki

if TYPE_CHECKING:  # os-ken's controller module is imported after its app manager, by the app
    from os_ken.controller.controller import Datapath

#: Characters of a switch's own text (why a hello failed) an error's text quotes at most.
_ERROR_QUOTE = 200


def peer(dp: Datapath) -> str:
    """``host:port`` of the switch end of a datapath's connection."""
    host, port = dp.address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def switch_certificate(dp: Datapath) -> str | None:
    """The identity in the certificate a switch presented over TLS; None over plain TCP."""
    getpeercert = getattr(dp.socket, "getpeercert", None)
    return (pki.certified_identity(getpeercert()) or "") if getpeercert is not None else None


def hang_up(dp: Datapath) -> None:
    """Close a datapath's connection, so that os-ken's threads serving it end too."""
    dp.close()
    # os-ken's native hub cannot kill the thread sending to the switch, blocked on its
    # empty queue, and the receiving thread waits for it: without one more (empty)
    # write to wake it, both would live as long as the process.
    dp.send(b"")


def port_desc(port: Any) -> PortDesc | None:
    """The :class:`PortDesc` of an os-ken ``OFPPort``; None for reserved ports."""
    if port.port_no >= ofp.OFPP_MAX:  # OFPP_LOCAL and the other reserved numbers
        return None
    name = port.name.decode("utf-8", "replace") if isinstance(port.name, bytes) else str(port.name)
    up = not (port.config & ofp.OFPPC_PORT_DOWN) and not (port.state & ofp.OFPPS_LINK_DOWN)
    return PortDesc(port.port_no, name, port.hw_addr.lower(), up)


def flows_in(msg: Any) -> list[Flow]:
    """The flows of a flow stats reply: decoded from its raw bytes when it came off the wire
    (os-ken never parses those), from os-ken's objects otherwise. Raises DecodeError."""
    if msg.buf is not None:
        return fast_decode.decode_flow_stats(msg.buf, end=msg.msg_len)
    return [reference.flow_from_stats(s) for s in msg.body]


def groups_in(msg: Any) -> list[Group]:
    """The groups of a group description reply, as :func:`flows_in` reads flows."""
    if msg.buf is not None:
        return fast_decode.decode_group_desc(msg.buf, end=msg.msg_len)
    return [reference.group_from_stats(s) for s in msg.body]


def _number(value: Any, spec: str = "d") -> str:
    return format(value, spec) if isinstance(value, int) else "?"


def error_text(msg: Any) -> str:
    """Readable text of an OpenFlow error message: any type and code, experimenter errors included.

    Never raises: an experimenter error has no code (os-ken leaves it None), and
    unknown types and codes are named by number.
    """
    ofproto = msg.datapath.ofproto
    kind, data = msg.type, msg.data or b""
    if not isinstance(kind, int):
        text = f"error type {kind!r}"
    elif kind == ofproto.OFPET_EXPERIMENTER:
        text = (f"{ofproto.ofp_error_type_to_str(kind)} experimenter "
                f"{_number(getattr(msg, 'experimenter', None), '#010x')} "
                f"type {_number(getattr(msg, 'exp_type', None))}")
    else:
        code = getattr(msg, "code", None)
        code_text = ofproto.ofp_error_code_to_str(kind, code) if isinstance(code, int) else "code ?"
        text = f"{ofproto.ofp_error_type_to_str(kind)} {code_text}"
    if kind == ofproto.OFPET_HELLO_FAILED:  # the data is text saying why, not a message
        reason = bytes(data[:_ERROR_QUOTE]).decode("ascii", "replace")
        text += f": {reason!r}" if reason else ""
    elif len(data) >= ofproto.OFP_HEADER_SIZE:
        text += f" in {ofproto.ofp_msg_type_to_str(data[1])}"
    return f"{text} (xid {msg.xid})"
