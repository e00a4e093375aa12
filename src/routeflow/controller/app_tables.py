"""The RF-Controller's table handlers, mixed into :class:`~routeflow.controller.app.RouteFlowController`.

The server's :class:`~routeflow.protocol.messages.TableMod` goes to its switch as
wire bytes, encoded and sent in chunks (:class:`~routeflow.controller.openflow.fast_encode.TableModWriter`);
its :class:`~routeflow.protocol.messages.DumpTable` asks the switch for every flow
and group, and :class:`~routeflow.controller.dumps.TableDumps` gathers the replies,
decoded by the fast decoder, into one :class:`~routeflow.protocol.messages.TableDump`.

:class:`TableHandlers` is a mixin, not an object of its own, because os-ken finds
an app's event handlers among its methods (``handler.register_instance`` walks
``inspect.getmembers`` of the app, inherited methods included): the flow stats and
group description handlers must be the app's. They work on the app's tables, lock
and send path, which the annotations below name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from os_ken.controller import ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.actions import Action
from routeflow.controller.dumps import TableDumps
from routeflow.controller.openflow import errors, fast_encode
from routeflow.controller.roles import Roles
from routeflow.controller.switch import flows_in, groups_in
from routeflow.model import Flow, Group
from routeflow.protocol.messages import DumpTable, SwitchError, TableDump, TableMod

#: Bytes of serialised OpenFlow messages handed to os-ken's send queue at once.
SEND_CHUNK = 64 * 1024


class TableHandlers:
    """The server's table changes and table dumps, and the switches' replies to the dumps."""

    # The app's (routeflow.controller.app.RouteFlowController), which these handlers share.
    logger: logging.Logger
    roles: Roles
    dumps: TableDumps
    _lock: threading.Lock
    _wake: threading.Condition
    _datapaths: dict[int, Datapath]
    _next_xid: Callable[[], int]
    _current: Callable[[Datapath], bool]
    _step: Callable[[], AbstractContextManager[list[Action]]]

    def apply_table_mod(self, mod: TableMod) -> None:
        """Send the flow and group changes of ``mod`` to its datapath, in a safe order."""
        with self._lock:
            dp = self._datapaths.get(mod.dpid)
            if dp is not None and not self.roles.may_write(mod.dpid):
                # Another controller is master there (a newer election the server has not told us of).
                self.logger.warning("table change for datapath %016x dropped: this controller is not its master",
                                    mod.dpid)
                return
        if dp is None:
            self.logger.warning("table change for datapath %016x, which is not connected", mod.dpid)
            with self._step() as actions:
                actions.append(SwitchError(mod.dpid, "datapath not connected"))
            return
        # Wire bytes straight away (os-ken objects only for shapes the fast encoder does not write),
        # sent as they are encoded: the switch works while the rest is encoded.
        writer = fast_encode.TableModWriter(mod, self._next_xid, SEND_CHUNK)
        for chunk in writer:
            if not dp.send(chunk):
                break
        for error in writer.errors:
            self.logger.error("datapath %016x: %s", mod.dpid, error)
        with self._step() as actions:
            actions += [SwitchError(mod.dpid, error) for error in writer.errors]
        self.logger.debug("datapath %016x: sent %d messages", mod.dpid, writer.count)

    def dump_table(self, request: DumpTable) -> None:
        """Ask the datapath for every flow and group; the reply goes out when both are complete."""
        dpid = request.dpid
        with self._step() as actions:
            dp = self._datapaths.get(dpid)
            if dp is None:
                actions.append(TableDump(request.request_id, dpid, (), (), "datapath not connected"))
                return
            xids = (self._next_xid(), self._next_xid())
            self.dumps.start(request.request_id, dpid, xids, time.monotonic())
            self._wake.notify()
        flow_req = parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                              0, 0, parser.OFPMatch())
        group_req = parser.OFPGroupDescStatsRequest(dp, 0)
        flow_req.set_xid(xids[0])
        group_req.set_xid(xids[1])
        if not (dp.send_msg(flow_req) and dp.send_msg(group_req)):
            with self._step() as actions:
                actions += self.dumps.fail(dpid, xids[0], "datapath disconnected")

    def _dump_reply(self, msg: Any, decode: Callable[[], tuple[list[Flow], list[Group]]]) -> None:
        """A part of the reply to a dump request (flow stats or group descriptions), decoded by ``decode``."""
        dp, xid, more = msg.datapath, msg.xid, bool(msg.flags & ofp.OFPMPF_REPLY_MORE)
        dpid: int = dp.id
        with self._lock:
            # unasked for, too late, or from another connection: not worth decoding
            if not self.dumps.expects(dpid, xid) or not self._current(dp):
                return
        try:
            flows, groups = decode()
            error = ""
        except errors.DecodeError as exc:  # a reply we cannot read must not leave the server waiting
            self.logger.warning("datapath %016x: malformed table dump reply: %s", dpid, exc)
            error = f"unreadable reply: {exc}"
        except Exception as exc:  # noqa: BLE001 - a backstop: no bug may leave the server waiting either
            self.logger.exception("datapath %016x: unreadable table dump", dpid)
            error = f"unreadable reply: {exc}"
        with self._step() as actions:
            if error:
                actions += self.dumps.fail(dpid, xid, error)
            else:
                actions += self.dumps.reply(dpid, xid, flows, groups, more, time.monotonic())

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats_reply(self, ev: Any) -> None:
        self._dump_reply(ev.msg, lambda: (flows_in(ev.msg), []))

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def _group_desc_reply(self, ev: Any) -> None:
        self._dump_reply(ev.msg, lambda: ([], groups_in(ev.msg)))
