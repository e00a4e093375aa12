"""OpenFlow controller roles: which of two RF-Controllers is master of the switches.

Every switch is given both controllers' targets and connects to both. The
RF-Server elects one controller active and tells each its part with an election
term (:class:`~routeflow.protocol.messages.Welcome`, then
:class:`~routeflow.protocol.messages.ControllerRole`); each controller asks every
switch for the role that follows: the active one MASTER, the other SLAVE, both
with the term as the generation id. A switch refuses a MASTER or SLAVE request
whose generation id is older than the newest it has seen (``OFPRRFC_STALE``), so
a deposed controller that still believes it is active cannot take a switch back;
and when a new master is set, the switch makes the old one a slave and says so
(a role status: standard in OpenFlow 1.4, an ONF experimenter message,
``ONFT_ROLE_STATUS``, in 1.3, which is what Open vSwitch sends).

:class:`Roles` is pure: the app feeds it the server's word and the switches'
role replies, errors and role statuses, sends the :class:`RoleRequest` s it
returns, and asks :meth:`Roles.may_write` before a flow change or a packet out.
A server that holds no elections (term 0) asks for no role: the switches keep
their default, equal, and the controller writes as it always did.

:func:`install_role_status_parser` is the one piece of os-ken glue here: it lets the
role status through the parser guards, which refuse every other experimenter message.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

LOG = logging.getLogger("routeflow.controller")

#: The ONF's experimenter id, and its role status message (OpenFlow 1.3 extension 1911).
ONF_EXPERIMENTER_ID = 0x4F4E4600
ONFT_ROLE_STATUS = 1911
#: ``ofp_error_type`` OFPET_ROLE_REQUEST_FAILED and its code OFPRRFC_STALE.
OFPET_ROLE_REQUEST_FAILED = 11
OFPRRFC_STALE = 0
#: role (uint32), reason (uint8), 3 pad bytes, generation id (uint64): the body of a role
#: status after its header (1.4) or after its experimenter header (ONF, 1.3).
_ROLE_STATUS = struct.Struct("!IB3xQ")
#: The experimenter header (experimenter id, type) after the OpenFlow header, and the whole
#: ONF role status: 8 + 8 + 16 bytes.
_EXPERIMENTER = struct.Struct("!II")
_ONF_ROLE_STATUS_LEN = ofp.OFP_HEADER_SIZE + _EXPERIMENTER.size + _ROLE_STATUS.size


class Role(enum.IntEnum):
    """``ofp_controller_role``."""

    NOCHANGE = 0
    EQUAL = 1
    MASTER = 2
    SLAVE = 3


@dataclass(frozen=True)
class RoleRequest:
    """Send ``OFPT_ROLE_REQUEST`` for ``role`` with generation id ``generation`` to ``dpid``."""

    dpid: int
    role: Role
    generation: int
    xid: int


@dataclass
class _Switch:
    """One connected switch: what this controller asked it for and what it says we are."""

    #: The role asked for (None: none asked), and the xid of that request until answered.
    wanted: Role | None = None
    xid: int | None = None
    #: The role the switch last said this controller has (None until it says).
    role: Role | None = None
    #: The switch's generation id (its newest master's), as last seen.
    generation: int | None = None
    #: A request for MASTER refused, or mastership taken by another: no writes until the next election.
    deposed: bool = False


def decode_role_status(body: bytes) -> tuple[Role, int, int] | None:
    """``(role, reason, generation id)`` of a role status body; None if it is not one."""
    if len(body) < _ROLE_STATUS.size:
        return None
    role, reason, generation = _ROLE_STATUS.unpack_from(body)
    if role not in Role.__members__.values():
        return None
    return Role(role), reason, generation


class Roles:
    """This controller's part and every connected switch's role (see the module's docstring).

    ``next_xid`` gives the transaction id of each request (the app's counter).
    """

    def __init__(self, next_xid: Callable[[], int]) -> None:
        self._next_xid = next_xid
        #: What the server said: active or standing by, in election ``term`` (0: no elections).
        #: Until it says, this controller stands by: it writes nothing and relays nothing.
        self.active = False
        self.term = 0
        self._switches: dict[int, _Switch] = {}

    def assign(self, active: bool, term: int) -> list[RoleRequest]:
        """The server's word: this controller is ``active`` (or not) in ``term``. Returns the
        role requests to send every connected switch; none for a term older than the one held
        (a message overtaken by a newer election)."""
        if term and term < self.term:
            LOG.warning("ignoring election term %d: term %d is newer", term, self.term)
            return []
        if active != self.active or term != self.term:
            LOG.info("controller %s in election term %d", "active" if active else "standing by", term)
        self.active, self.term = active, term
        return [request for dpid in self._switches for request in self._request(dpid)]

    def connected(self, dpid: int) -> list[RoleRequest]:
        """A switch connected (or reconnected): ask it for this controller's role."""
        self._switches[dpid] = _Switch()
        return self._request(dpid)

    def disconnected(self, dpid: int) -> None:
        self._switches.pop(dpid, None)

    def _request(self, dpid: int) -> list[RoleRequest]:
        switch = self._switches[dpid]
        switch.deposed = False
        if not self.term:
            switch.wanted = switch.xid = None
            return []
        switch.wanted = Role.MASTER if self.active else Role.SLAVE
        switch.xid = self._next_xid()
        return [RoleRequest(dpid, switch.wanted, self.term, switch.xid)]

    def reply(self, dpid: int, xid: int, role: int, generation: int) -> None:
        """The switch's role reply: the role it gives us, and its generation id."""
        switch = self._switches.get(dpid)
        if switch is None or role not in Role.__members__.values():
            return
        if xid == switch.xid:
            switch.xid = None
        switch.role, switch.generation = Role(role), generation
        LOG.info("datapath %016x: %s (generation %d)", dpid, switch.role.name.lower(), generation)

    def refused(self, dpid: int, xid: int, code: int) -> bool:
        """An ``OFPET_ROLE_REQUEST_FAILED`` error of ``code`` for request ``xid``: whether it was
        this controller's pending request (else the error is someone else's business)."""
        switch = self._switches.get(dpid)
        if switch is None or xid != switch.xid:
            return False
        switch.xid = None
        if switch.wanted is Role.MASTER:
            # Stale: the switch has seen a newer election, whose master is another controller.
            switch.deposed = True
        LOG.warning("datapath %016x refused role %s in term %d: %s", dpid, (switch.wanted or Role.EQUAL).name.lower(),
                    self.term, "a newer term holds it" if code == OFPRRFC_STALE else f"code {code}")
        return True

    def status(self, dpid: int, role: Role, generation: int) -> None:
        """The switch changed this controller's role by itself (a role status): another
        controller asked to be master, with ``generation``."""
        switch = self._switches.get(dpid)
        if switch is None:
            return
        switch.role, switch.generation = role, generation
        if role is not Role.MASTER and switch.wanted is Role.MASTER:
            switch.deposed = True
            LOG.warning("datapath %016x: another controller is master (generation %d): this one stops writing",
                        dpid, generation)

    def may_write(self, dpid: int) -> bool:
        """Whether this controller may change ``dpid``'s tables and send it packets: it is active
        and, with elections, asked to be master there and was not refused or deposed. (The
        request goes ahead of any write on the same connection, so the switch has settled it
        before the write: no need to wait for its reply.)"""
        if not self.active:
            return False
        if not self.term:
            return True
        switch = self._switches.get(dpid)
        return switch is not None and switch.wanted is Role.MASTER and not switch.deposed

    def role_of(self, dpid: int) -> str:
        """The role ``dpid`` last said this controller has: ``master``, ``slave`` or ``equal``;
        ``""`` if it has said none (no role asked for)."""
        switch = self._switches.get(dpid)
        return "" if switch is None or switch.role is None else switch.role.name.lower()


def install_role_status_parser() -> None:
    """Have os-ken hand the app OpenFlow 1.3's ONF role status as an ``OFPExperimenter``
    (``EventOFPExperimenter``), read at its fixed size, ahead of the parser guards
    (:func:`routeflow.controller.openflow.guards.install_parser_guards`, installed first), which
    drop every experimenter message unparsed. Process-wide and idempotent."""
    table = ofproto_parser._MSG_PARSERS
    guarded = table[ofp.OFP_VERSION]
    if getattr(guarded, "routeflow_role_status", False):
        return

    def parse(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: bytes) -> Any:
        if msg_type == ofp.OFPT_EXPERIMENTER and msg_len == _ONF_ROLE_STATUS_LEN and len(buf) >= msg_len:
            experimenter, exp_type = _EXPERIMENTER.unpack_from(buf, ofp.OFP_HEADER_SIZE)
            if (experimenter, exp_type) == (ONF_EXPERIMENTER_ID, ONFT_ROLE_STATUS):
                body = bytes(buf[ofp.OFP_HEADER_SIZE + _EXPERIMENTER.size:msg_len])
                msg = parser.OFPExperimenter(datapath, experimenter, exp_type, body)
                msg.set_headers(version, msg_type, msg_len, xid)
                msg.set_buf(buf)
                return msg
        return guarded(datapath, version, msg_type, msg_len, xid, buf)

    # Guarded as what it wraps is: installing the guards again must not wrap it. Its
    # ``original`` is os-ken's own parser, as the guards' is.
    parse.routeflow_guarded = True  # type: ignore[attr-defined]
    parse.original = getattr(guarded, "original", guarded)  # type: ignore[attr-defined]
    parse.routeflow_role_status = True  # type: ignore[attr-defined]
    table[ofp.OFP_VERSION] = parse
