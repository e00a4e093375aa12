"""The RF-Controller's OpenFlow role handlers, mixed into :class:`~routeflow.controller.app.RouteFlowController`.

Two controllers may serve the same switches, one active (OpenFlow master), the
other standing by (slave): :class:`~routeflow.controller.roles.Roles` holds which
this one is, as the RF-Server elects it. A controller standing by keeps its view
of datapaths and ports current but says nothing to the server and writes nothing
to a switch; promoted, it reports every datapath as on a reconnection to the
server, which reads each switch's table and sends only the difference.

:class:`RoleHandlers` is a mixin, not an object of its own, because os-ken finds
an app's event handlers among its methods (``handler.register_instance`` walks
``inspect.getmembers`` of the app, inherited methods included): the role reply
and role status handlers must be the app's. They work on the app's tables, lock
and send path, which the annotations below name; the app's other handlers ask
``roles`` before they write (``Roles.may_write``) or report.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from os_ken.controller import ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.actions import Action
from routeflow.controller.discovery import Prober
from routeflow.controller.ports import DatapathPorts
from routeflow.controller.roles import ONF_EXPERIMENTER_ID, ONFT_ROLE_STATUS, RoleRequest, Roles, decode_role_status
from routeflow.protocol.messages import ControllerRole


class RoleHandlers:
    """The server's elections and the switches' role replies and statuses, fed to ``roles``."""

    # The app's (routeflow.controller.app.RouteFlowController), which these handlers share.
    roles: Roles
    ports: DatapathPorts
    prober: Prober
    _lock: threading.Lock
    _datapaths: dict[int, Datapath]
    _current: Callable[[Datapath], bool]
    _step: Callable[[], AbstractContextManager[list[Action]]]

    def set_role(self, msg: ControllerRole) -> None:
        """The server elected a controller: this one is active now, or stands by."""
        self._take_part(msg.active, msg.term, report=False)

    def _take_part(self, active: bool, term: int, report: bool) -> None:
        """Become active or stand by in ``term``: ask every switch for the role that follows
        and, on becoming active (or with ``report``), report every datapath to the server."""
        with self._lock:
            was_active = self.roles.active
            requests = self.roles.assign(active, term)
        # Queued to each switch before anything this controller writes to it as master.
        self._send_role_requests(requests)
        with self._step() as actions:
            if self.roles.active and (report or not was_active):
                actions += self.ports.joins()
                actions += self.prober.known()

    def _send_role_requests(self, requests: list[RoleRequest]) -> None:
        for request in requests:
            with self._lock:
                dp = self._datapaths.get(request.dpid)
            if dp is not None:
                msg = parser.OFPRoleRequest(dp, int(request.role), request.generation)
                msg.set_xid(request.xid)
                dp.send_msg(msg)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def _role_reply(self, ev: Any) -> None:
        msg = ev.msg
        with self._lock:
            if self._current(msg.datapath):
                self.roles.reply(msg.datapath.id, msg.xid, msg.role, msg.generation_id)

    @set_ev_cls(ofp_event.EventOFPExperimenter, MAIN_DISPATCHER)
    def _experimenter(self, ev: Any) -> None:
        """OpenFlow 1.3's role status (ONF extension 1911): another controller became master."""
        msg = ev.msg
        if (msg.experimenter, msg.exp_type) != (ONF_EXPERIMENTER_ID, ONFT_ROLE_STATUS):
            return
        status = decode_role_status(bytes(msg.data))
        with self._lock:
            if status is not None and self._current(msg.datapath):
                self.roles.status(msg.datapath.id, status[0], status[2])
