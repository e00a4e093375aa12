"""The RF-Controller: an os-ken application between OpenFlow switches and the RF-Server.

It holds no routing logic. It reports datapaths, their ports and port status
to the server; applies the server's :class:`TableMod` and answers its
:class:`DumpTable` and :class:`StatsRequest`; and relays slow-path packets
between switch ports and the RFVS ports of the VM NICs mirroring them,
reporting port-identification (mapping) packets instead of relaying them.
For the datapaths the server's :class:`DiscoveryPlan` names, it finds the
physical links between switches with LLDP probes and reports each link found
or lost (:class:`LinkChange`); a port going down loses its links at once.

The app is a shim, as FAUCET's ``faucet.py`` is: each handler turns an
OpenFlow event or a server message into a call on a pure object that takes
the time and returns :data:`~routeflow.controller.actions.Action` s -- the
table dumps (:class:`~routeflow.controller.dumps.TableDumps`), the discovery
prober (:class:`~routeflow.controller.discovery.Prober`) and the slow path
(:class:`~routeflow.controller.relay.SlowPath`) -- and sends what comes back
through one send path (:meth:`RouteFlowController._step`). What it keeps
itself is which connection each datapath id is known by, and its ports. The
handlers of the server's table changes and dumps
(:class:`~routeflow.controller.app_tables.TableHandlers`) and of OpenFlow roles
(:class:`~routeflow.controller.app_roles.RoleHandlers`) are mixed in from modules
of their own; os-ken registers an app's inherited handlers as its own.

Two controllers may serve the same switches, one active (OpenFlow master), the
other standing by (slave), as the RF-Server elects them; every write to a switch
and word to the server asks :class:`~routeflow.controller.roles.Roles` first.

A datapath is the one connection its id is known by. Anyone who can reach the
OpenFlow port can claim any id, so a second connection claiming a connected
id is held while the first is sent an echo request: if the first answers
within :data:`ECHO_TIMEOUT`, the second is refused and closed; if not, the
first is closed and the second takes its place (a switch that reconnected
before its old connection was seen to end). Nothing from a connection that is
not the one its id is known by reaches the server or the other switches.

Threads: os-ken runs each datapath's socket loops and this app's event loop
on native threads; server messages arrive on the :class:`ServerLink` thread;
the check of a second connection runs on a thread of its own, and probe
rounds and dump deadlines on the app's clock thread. ``Datapath.send`` only
puts bytes on a thread-safe queue, so any thread may send; transaction ids
come from this app's own counter because os-ken's ``set_xid`` is not atomic.
``_lock`` guards every table and object below, and messages to the server
are sent while holding it, so that they leave in the order of the events.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from routeflow.controller.actions import Action, PacketOut
from routeflow.controller.app_roles import RoleHandlers
from routeflow.controller.app_tables import TableHandlers
from routeflow.controller.discovery import Prober
from routeflow.controller.dumps import TableDumps
from routeflow.controller.link import ServerLink
from routeflow.controller.openflow import guards
from routeflow.controller.ports import DatapathPorts
from routeflow.controller.relay import SlowPath
from routeflow.controller.roles import OFPET_ROLE_REQUEST_FAILED, Roles, install_role_status_parser
from routeflow.controller.settings import ControllerSettings
from routeflow.controller.switch import error_text, hang_up, peer, port_desc, switch_certificate
from routeflow.protocol import pki
from routeflow.protocol.codec import RemoteProtocolError
from routeflow.protocol.messages import (
    Admission,
    AnyMessage,
    ControllerRole,
    DatapathLeave,
    DiscoveryPlan,
    DumpTable,
    Goodbye,
    Message,
    RelayMap,
    StatsRequest,
    SwitchError,
    TableMod,
    Welcome,
)
from routeflow.protocol.transport import parse_addresses

LOGGER_NAME = "routeflow.controller"
_PACKET_IN_REASONS = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION | 1 << ofp.OFPR_INVALID_TTL
_PORT_STATUS_REASONS = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
#: Seconds the connection a datapath id is known by has to answer an echo request when
#: another connection claims that id; silent that long, it is taken for dead and replaced.
ECHO_TIMEOUT = 2.0


@dataclass
class _Check:
    """A second connection claiming a connected datapath id, held while the first is asked whether it lives."""

    first: Datapath
    newcomer: Datapath
    xid: int  # of the echo request to the first
    answered: threading.Event = field(default_factory=threading.Event)


class RouteFlowController(RoleHandlers, TableHandlers, app_manager.OSKenApp):
    """The os-ken application: OpenFlow events <-> RF-protocol messages."""

    OFP_VERSIONS = [ofp.OFP_VERSION]
    LOGGER_NAME = LOGGER_NAME

    def __init__(self, *args: Any, settings: ControllerSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Table dumps come as raw bytes, decoded by the fast decoder instead of os-ken; and os-ken
        # parses nothing from a switch it cannot parse in bounded time.
        guards.install_raw_stats_replies()
        guards.install_parser_guards()
        install_role_status_parser()  # after the guards, which refuse every experimenter message
        self.settings = settings or ControllerSettings.from_conf(self.CONF.routeflow)
        self.link = ServerLink(parse_addresses(self.settings.server), self.settings.name,
                               self._on_server_connect, self._on_server_message, keys=self.settings.keys)
        self._lock = threading.Lock()
        #: Wakes the clock thread before its time: a dump started, a new plan, the app stopping.
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._xids = itertools.count(1)
        #: The connection each datapath id is known by.
        self._datapaths: dict[int, Datapath] = {}
        self.ports = DatapathPorts()
        #: Second connections held while the first is checked, by datapath id.
        self._checks: dict[int, _Check] = {}
        #: Connections refused for claiming the id of a live datapath (or of one being checked), by that id.
        self.refused: Counter[int] = Counter()
        self.dumps = TableDumps()
        self.prober = Prober()
        self.slow_path = SlowPath(self.prober)
        self.roles = Roles(self._next_xid)
        #: The handler of each message the server may send (every type of ``messages.ToController``).
        self.server_handlers: dict[type[Message], Callable[[Any], None]] = {
            TableMod: self.apply_table_mod,
            RelayMap: self.set_relay_map,
            DiscoveryPlan: self.set_discovery_plan,
            DumpTable: self.dump_table,
            StatsRequest: self.send_stats,
            ControllerRole: self.set_role,
            Admission: self.admission,
            Goodbye: self._goodbye,
        }
        self._clock = threading.Thread(target=self._run_clock, name="routeflow-clock", daemon=True)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Any:
        thread = super().start()
        self.link.start()
        self._clock.start()
        return thread

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self.link.stop()
        super().stop()

    def _run_clock(self) -> None:
        """Probe rounds and table dump deadlines, each when it is due."""
        while True:
            with self._step() as actions:
                if self._stopping:
                    return
                actions += self.tick(time.monotonic())
            with self._lock:
                due = min(self.prober.next_round, self.dumps.next_deadline())
                if not self._stopping:
                    self._wake.wait(max(due - time.monotonic(), 0.0))

    def tick(self, now: float) -> list[Action]:
        """What is due at ``now``: dumps timed out, links lost, a round of probes. Called holding ``_lock``."""
        return [*self.dumps.expire(now), *self.prober.tick(self.ports.joined, now)]

    # -- the one send path -----------------------------------------------------------

    @contextmanager
    def _step(self) -> Iterator[list[Action]]:
        """Hold ``_lock`` while the block adds actions to the list it is given; then send them.

        Messages to the server go before the lock is released, so that they leave
        in the order of the events that made them; packets out after it, since a
        switch's full send queue may hold its sender up.
        """
        actions: list[Action] = []
        outs: list[tuple[Datapath, PacketOut]] = []
        with self._lock:
            yield actions
            for action in actions:
                if isinstance(action, PacketOut):
                    dp = self._datapaths.get(action.dpid)
                    if dp is not None and self.roles.may_write(action.dpid):
                        outs.append((dp, action))
                elif self.roles.active:  # standing by, it tells the server nothing
                    self.link.send(action)
        for dp, out in outs:
            sent = self._send_msg(dp, parser.OFPPacketOut(dp, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                                                          [parser.OFPActionOutput(out.port, 0)], out.data))
            if sent and out.relayed:
                with self._lock:
                    self.slow_path.relayed(out.dpid)

    def _next_xid(self) -> int:
        return next(self._xids) & 0xFFFFFFFF

    def _send_msg(self, dp: Datapath, msg: Any) -> bool:
        msg.set_xid(self._next_xid())
        return bool(dp.send_msg(msg))

    # -- server side ---------------------------------------------------------------

    def _on_server_connect(self, welcome: Welcome) -> None:
        with self._lock:
            self.slow_path.rfvs = frozenset(welcome.rfvs)
        # The server may have restarted and forgotten everything: re-report (if active).
        self._take_part(welcome.controller_active, welcome.term, report=True)

    def _on_server_message(self, msg: AnyMessage) -> None:
        handler = self.server_handlers.get(type(msg))
        if handler is None:
            raise RemoteProtocolError(f"unexpected {type(msg).__name__} from the server")
        handler(msg)

    @staticmethod
    def _goodbye(msg: Goodbye) -> None:
        raise ConnectionError(f"server said goodbye: {msg.reason}")

    def send_stats(self, request: StatsRequest) -> None:
        """Answer the server's request for the slow path's counters."""
        with self._step() as actions:
            stats = self.slow_path.stats(request.request_id, dict(self.refused))
            roles = {dpid: role for dpid in self._datapaths if (role := self.roles.role_of(dpid))}
            actions.append(msgspec.structs.replace(stats, roles=roles))

    def set_relay_map(self, relay: RelayMap) -> None:
        """Replace the slow-path relay table."""
        with self._lock:
            self.slow_path.set_map(relay)

    def admission(self, decision: Admission) -> None:
        """The server admitted a switch no configured VM mirrored (a VM is made for it) or
        rejected it: a rejected switch's packet-ins are dropped from now on."""
        with self._lock:
            if decision.admitted:
                self.slow_path.rejected.discard(decision.dpid)
                self.logger.info("datapath %016x admitted: VM %s (template %s)", decision.dpid, decision.vm,
                         decision.template)
            else:
                self.slow_path.rejected.add(decision.dpid)
                self.logger.warning("datapath %016x rejected by the server: %s", decision.dpid, decision.reason)

    def set_discovery_plan(self, plan: DiscoveryPlan) -> None:
        """Probe the ports of ``plan.dpids`` from now on; links elsewhere are forgotten."""
        with self._step() as actions:
            actions += self.prober.plan(plan, self.ports.joined, time.monotonic())
            self._wake.notify()

    # -- datapaths ---------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None:  # died before the handshake finished
            return
        if ev.state == MAIN_DISPATCHER:
            self._datapath_up(dp, dp.id)
        elif ev.state == DEAD_DISPATCHER:
            self._datapath_down(dp, dp.id)

    def _current(self, dp: Datapath) -> bool:
        """Whether ``dp`` is the connection its datapath id is known by; called holding ``_lock``."""
        return dp.id is not None and self._datapaths.get(dp.id) is dp

    def _datapath_up(self, dp: Datapath, dpid: int) -> None:
        if self.settings.datapaths and dpid not in self.settings.datapaths:
            # Anyone who can reach the OpenFlow port can say it is a switch.
            self.logger.warning("refused datapath %016x from %s: not one of the datapaths allowed", dpid, peer(dp))
            hang_up(dp)
            return
        certified = switch_certificate(dp)
        if certified is not None and certified not in (pki.SWITCH, pki.switch_identity(dpid)):
            # Over TLS the certificate says which switch this is: one switch's credential
            # cannot claim another's datapath id.
            self.logger.warning("refused datapath %016x from %s: its certificate is %r's", dpid, peer(dp), certified)
            hang_up(dp)
            return
        with self._lock:
            first = self._datapaths.get(dpid)
            pending = self._checks.get(dpid)
            if first is None:
                xid = self._register(dp, dpid)
            elif pending is not None:
                self.refused[dpid] += 1
            else:
                check = self._checks[dpid] = _Check(first, dp, self._next_xid())
        if first is None:
            self._start(dp, dpid, xid)
        elif pending is not None:
            # One check at a time: a genuine switch among them connects again.
            self.logger.warning("refused another connection for datapath %016x from %s: the one from %s is "
                                "being checked", dpid, peer(dp), peer(pending.newcomer))
            hang_up(dp)
        else:
            self.logger.info("datapath %016x: a second connection from %s, checking the first (%s)", dpid,
                             peer(dp), peer(first))
            # A round trip (and a send that may wait for a full queue): not on os-ken's event thread.
            hub.spawn(self._check_first, check)

    def _check_first(self, check: _Check) -> None:
        """Refuse ``check.newcomer`` if the first connection answers an echo request in time; else replace the first."""
        echo = parser.OFPEchoRequest(check.first)
        echo.set_xid(check.xid)
        alive = check.first.send_msg(echo) and check.answered.wait(ECHO_TIMEOUT)
        dpid = check.newcomer.id
        with self._lock:
            if self._checks.get(dpid) is not check:  # settled when one of the two connections ended
                return
            del self._checks[dpid]
            if alive:
                self.refused[dpid] += 1
            else:
                xid = self._register(check.newcomer, dpid)
        if alive:
            self.logger.warning("refused a second connection for datapath %016x from %s: the first (%s) is alive",
                                dpid, peer(check.newcomer), peer(check.first))
            hang_up(check.newcomer)
            return
        self.logger.warning("datapath %016x: the first connection (%s) did not answer in %.1f s; the one from %s "
                            "replaces it", dpid, peer(check.first), ECHO_TIMEOUT, peer(check.newcomer))
        hang_up(check.first)
        self._start(check.newcomer, dpid, xid, replaced=True)

    def _register(self, dp: Datapath, dpid: int) -> int:
        """Make ``dp`` the connection ``dpid`` is known by; called holding ``_lock``.

        Returns the xid of the port description request its join waits for.
        """
        xid = self._next_xid()
        self._datapaths[dpid] = dp
        self.ports.request(dpid, xid)
        return xid

    def _start(self, dp: Datapath, dpid: int, xid: int, replaced: bool = False) -> None:
        """Configure a datapath just registered and ask for its ports."""
        if replaced:
            self.logger.info("datapath %016x reconnected", dpid)
            with self._step() as actions:
                actions += self.dumps.fail_datapath(dpid, "datapath reconnected")
        self.logger.info("datapath %016x connected from %s", dpid, peer(dp))
        with self._lock:
            requests = self.roles.connected(dpid)
        self._send_role_requests(requests)  # ahead of anything else it is sent
        # Whole packets in every packet-in, so they can be relayed as they are.
        self._send_msg(dp, parser.OFPSetConfig(dp, ofp.OFPC_FRAG_NORMAL, ofp.OFPCML_NO_BUFFER))
        # OpenFlow 1.3 switches (Open vSwitch among them) leave TTL-expired
        # packet-ins off by default; the VM needs them to send time-exceeded.
        self._send_msg(dp, parser.OFPSetAsync(dp, [_PACKET_IN_REASONS, 0],
                                              [_PORT_STATUS_REASONS, _PORT_STATUS_REASONS], [0, 0]))
        request = parser.OFPPortDescStatsRequest(dp, 0)
        request.set_xid(xid)
        dp.send_msg(request)

    def _datapath_down(self, dp: Datapath, dpid: int) -> None:
        successor = None
        with self._step() as actions:
            check = self._checks.get(dpid)
            if check is not None and (dp is check.first or dp is check.newcomer):
                del self._checks[dpid]
                if dp is check.first:  # dead, no need to wait for its answer
                    successor = check.newcomer
            if not self._current(dp):  # refused, held, or replaced by a newer connection
                return
            if successor is not None:
                xid = self._register(successor, dpid)
            else:
                del self._datapaths[dpid]
                self.roles.disconnected(dpid)
                if self.ports.forget(dpid):
                    actions += self.prober.datapath_gone(dpid)
                    actions.append(DatapathLeave(dpid))
                actions += self.dumps.fail_datapath(dpid, "datapath disconnected")
        self.logger.info("datapath %016x disconnected", dpid)
        if successor is not None:
            self._start(successor, dpid, xid, replaced=True)

    @set_ev_cls(ofp_event.EventOFPEchoReply, MAIN_DISPATCHER)
    def _echo_reply(self, ev: Any) -> None:
        msg = ev.msg
        with self._lock:
            check = self._checks.get(msg.datapath.id)
        if check is not None and check.first is msg.datapath and check.xid == msg.xid:
            check.answered.set()

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def _port_desc_reply(self, ev: Any) -> None:
        msg = ev.msg
        dp = msg.datapath
        dpid: int = dp.id
        ports = [p for p in map(port_desc, msg.body) if p is not None]
        with self._step() as actions:
            if not self._current(dp):
                return
            joins = self.ports.reply(dpid, msg.xid, ports, bool(msg.flags & ofp.OFPMPF_REPLY_MORE))
            actions += joins
        for join in joins:
            self.logger.info("datapath %016x joined with %d ports", dpid, len(join.ports))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        msg = ev.msg
        dpid = msg.datapath.id
        port = port_desc(msg.desc)
        if port is None:
            return
        if msg.reason not in (ofp.OFPPR_ADD, ofp.OFPPR_DELETE, ofp.OFPPR_MODIFY):
            self.logger.warning("datapath %016x: port status of unknown reason %s dropped", dpid, msg.reason)
            return
        deleted = msg.reason == ofp.OFPPR_DELETE
        with self._step() as actions:
            changes = self.ports.status(dpid, port, deleted) if self._current(msg.datapath) else []
            if not changes:
                return
            actions += changes
            actions += self.prober.port_changed(dpid, port, deleted)
        self.logger.info("datapath %016x port %d %s: %s", dpid, port.port_no, port.name,
                         "deleted" if deleted else "up" if port.up else "down")

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        dpid = msg.datapath.id
        text = error_text(msg)
        self.logger.warning("datapath %s: %s", "?" if dpid is None else f"{dpid:016x}", text)
        with self._step() as actions:
            if not self._current(msg.datapath):  # not through the handshake, or not the datapath's connection
                return
            if msg.type == OFPET_ROLE_REQUEST_FAILED and self.roles.refused(dpid, msg.xid, msg.code):
                return
            if self.dumps.expects(dpid, msg.xid):
                actions += self.dumps.fail(dpid, msg.xid, text)
            else:
                actions.append(SwitchError(dpid, text))

    # -- slow path -----------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        try:
            in_port = msg.match["in_port"]
            data = bytes(msg.data)
            total_len = int(msg.total_len)
        except (KeyError, TypeError, AttributeError, ValueError):
            in_port, data, total_len = None, b"", 0
        if type(in_port) is not int:  # a masked in_port is a tuple: no port to relay from
            in_port = None
        with self._step() as actions:
            if not self._current(msg.datapath):  # not a word of a held or refused connection gets through
                return
            actions += self.slow_path.receive(msg.datapath.id, in_port, data, total_len, self._datapaths,
                                              time.monotonic())
