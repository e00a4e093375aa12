"""The RF-Controller: an os-ken application between OpenFlow switches and the RF-Server.

It holds no routing logic. It reports datapaths, their ports and port status
to the server; applies the server's :class:`TableMod` and answers its
:class:`DumpTable` and :class:`StatsRequest`; and relays slow-path packets
between switch ports and the RFVS ports of the VM NICs mirroring them,
reporting port-identification (mapping) packets instead of relaying them.
For the datapaths the server's :class:`DiscoveryPlan` names, it finds the
physical links between switches with LLDP probes and reports each link found
or lost (:class:`LinkChange`); a port going down loses its links at once.

A datapath is the one connection its id is known by. Anyone who can reach the
OpenFlow port can claim any id, so a second connection claiming a connected
id is held while the first is sent an echo request: if the first answers
within :data:`ECHO_TIMEOUT`, the second is refused and closed; if not, the
first is closed and the second takes its place (a switch that reconnected
before its old connection was seen to end). Nothing from a connection that is
not the one its id is known by reaches the server or the other switches.

Threads: os-ken runs each datapath's socket loops and this app's event loop
on native threads; server messages arrive on the :class:`ServerLink` thread,
and the check of a second connection runs on a thread of its own.
``Datapath.send`` only puts bytes on a thread-safe queue, so any thread may
send; transaction ids come from this app's own counter because os-ken's
``set_xid`` is not atomic. ``_lock`` guards every table below, and messages
whose order the server relies on (joins, port changes, leaves) are sent
while holding it.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from oslo_config import cfg

from routeflow.controller import ofcodec, ofwire
from routeflow.controller.classify import traffic_kind
from routeflow.controller.discovery import Change, LinkTable
from routeflow.controller.link import ServerLink
from routeflow.flows.model import Flow, Group
from routeflow.model import IfName, PortDesc
from routeflow.protocol import auth, lldp, mapping, pki
from routeflow.protocol.codec import RemoteProtocolError
from routeflow.protocol.messages import (
    AnyMessage,
    ControllerStats,
    DatapathJoin,
    DatapathLeave,
    DiscoveryPlan,
    DumpTable,
    Goodbye,
    LinkChange,
    MappingSeen,
    Message,
    PortChange,
    RelayMap,
    StatsRequest,
    SwitchError,
    TableDump,
    TableMod,
    Welcome,
    parts,
)
from routeflow.protocol.transport import DEFAULT_SERVER, parse_address

LOGGER_NAME = "routeflow.controller"
#: A dump fails when the switch sends no reply part for this long (a large
#: table takes longer than this in all; each part restarts the clock).
DUMP_TIMEOUT = 10.0
#: Flows per TableDump part sent to the server.
DUMP_PART = 10_000
#: Bytes of serialised OpenFlow messages handed to os-ken's send queue at once.
SEND_CHUNK = 64 * 1024
_MAPPING_ETH_TYPE = mapping.ETH_TYPE.to_bytes(2, "big")
_LLDP_ETH_TYPE = lldp.ETH_TYPE.to_bytes(2, "big")
#: A link no probe crossed for this many probe intervals is lost.
LINK_TIMEOUT_INTERVALS = 3.5
_PACKET_IN_REASONS = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION | 1 << ofp.OFPR_INVALID_TTL
_PORT_STATUS_REASONS = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
#: Ports a datapath may have; more are ignored (each is probed, and a join is one message).
MAX_PORTS = 65536
#: Largest frame a packet-out can relay: its header and one output action take 40 bytes.
_MAX_RELAY = 0xFFFF - ofp.OFP_PACKET_OUT_SIZE - ofp.OFP_ACTION_OUTPUT_SIZE
#: Characters of a switch's own text (why a hello failed) an error's text quotes at most.
_ERROR_QUOTE = 200
#: Seconds the connection a datapath id is known by has to answer an echo request when
#: another connection claims that id; silent that long, it is taken for dead and replaced.
ECHO_TIMEOUT = 2.0

OPTIONS = [
    cfg.StrOpt("server", default=DEFAULT_SERVER, help="RF-Server address (tcp:HOST:PORT or unix:PATH)"),
    cfg.StrOpt("name", default="", help="name to give the RF-Server (default: host name)"),
    # Not "keys": oslo.config groups have a keys() method that would shadow it.
    cfg.StrOpt("key-dir", default=str(auth.KEY_DIR), help="directory of routeflow's keys"),
    cfg.ListOpt("datapaths", default=[], help="datapath ids allowed to connect (default: any)"),
]


def register_options(conf: cfg.ConfigOpts) -> None:
    """Declare ``--routeflow-server``, ``-name``, ``-key-dir`` and ``-datapaths`` on os-ken's config."""
    conf.register_cli_opts(OPTIONS, group="routeflow")


@dataclass(frozen=True)
class ControllerSettings:
    """What the app needs besides os-ken's own options: whom to report to, as whom,
    with which key, and which switches may connect (empty: any)."""

    server: str
    name: str
    keys: Path = auth.KEY_DIR
    datapaths: frozenset[int] = frozenset()


@dataclass
class _Dump:
    """A table dump in progress: two multipart requests and what came back so far."""

    request_id: int
    dpid: int
    xids: tuple[int, int]  # flow stats, group desc
    timer: threading.Timer
    flows: list[Flow] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    waiting: set[int] = field(default_factory=set)


@dataclass
class _Check:
    """A second connection claiming a connected datapath id, held while the first is asked whether it lives."""

    first: Datapath
    newcomer: Datapath
    xid: int  # of the echo request to the first
    answered: threading.Event = field(default_factory=threading.Event)


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


class RouteFlowController(app_manager.OSKenApp):
    """The os-ken application: OpenFlow events <-> RF-protocol messages."""

    OFP_VERSIONS = [ofp.OFP_VERSION]
    LOGGER_NAME = LOGGER_NAME

    def __init__(self, *args: Any, settings: ControllerSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Table dumps come as raw bytes, decoded by ofwire instead of os-ken; and os-ken
        # parses nothing from a switch it cannot parse in bounded time.
        ofwire.install_raw_stats_replies()
        ofwire.install_parser_guards()
        if settings is None:
            conf = self.CONF.routeflow
            settings = ControllerSettings(conf.server, conf.name or socket.gethostname(), Path(conf.key_dir),
                                          frozenset(int(d, 16) for d in conf.datapaths))
        self.settings = settings
        self.link = ServerLink(parse_address(settings.server), settings.name,
                               self._on_server_connect, self._on_server_message, keys=settings.keys)
        self._lock = threading.Lock()
        self._xids = itertools.count(1)
        #: The connection each datapath id is known by.
        self._datapaths: dict[int, Datapath] = {}
        #: Ports of the datapaths reported to the server (joined), by dpid.
        self._ports: dict[int, dict[int, PortDesc]] = {}
        #: The port description request a datapath's join waits for: its xid and the ports so far.
        self._port_requests: dict[int, tuple[int, list[PortDesc]]] = {}
        #: Second connections held while the first is checked, by datapath id.
        self._checks: dict[int, _Check] = {}
        #: Connections refused for claiming the id of a live datapath (or of one being checked), by that id.
        self.refused: Counter[int] = Counter()
        self._rfvs: frozenset[int] = frozenset()
        self._to_rfvs: dict[tuple[int, int], tuple[int, int]] = {}
        self._from_rfvs: dict[tuple[int, int], tuple[int, int]] = {}
        self._dumps: dict[tuple[int, int], _Dump] = {}
        self.packet_in: Counter[int] = Counter()
        #: (dpid, traffic kind) -> packet-ins, so data traffic in the slow path shows.
        self.packet_in_kinds: Counter[tuple[int, str]] = Counter()
        self.packet_out: Counter[int] = Counter()
        self.dropped: Counter[int] = Counter()
        self._probe_dpids: frozenset[int] = frozenset()
        self._probe_interval = 1.0
        self._links = LinkTable(LINK_TIMEOUT_INTERVALS * self._probe_interval)
        self._stopping = threading.Event()
        self._prober = threading.Thread(target=self._probe_loop, name="routeflow-discovery", daemon=True)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Any:
        thread = super().start()
        self.link.start()
        self._prober.start()
        return thread

    def stop(self) -> None:
        self._stopping.set()
        self.link.stop()
        with self._lock:
            for dump in self._dumps.values():
                dump.timer.cancel()
        super().stop()

    # -- server side ---------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        self.link.send(msg)

    def _on_server_connect(self, welcome: Welcome) -> None:
        with self._lock:
            self._rfvs = frozenset(welcome.rfvs)
            # The server may have restarted and forgotten everything: re-report.
            for dpid, ports in self._ports.items():
                self._send(DatapathJoin(dpid, tuple(sorted(ports.values()))))
            for src, dst in self._links.last_seen:
                self._send(LinkChange(*src, *dst, True))

    def _on_server_message(self, msg: AnyMessage) -> None:
        if isinstance(msg, TableMod):
            self.apply_table_mod(msg)
        elif isinstance(msg, RelayMap):
            self.set_relay_map(msg)
        elif isinstance(msg, DiscoveryPlan):
            self.set_discovery_plan(msg)
        elif isinstance(msg, DumpTable):
            self.dump_table(msg)
        elif isinstance(msg, StatsRequest):
            with self._lock:
                kinds: dict[int, dict[str, int]] = {}
                for (dpid, kind), count in self.packet_in_kinds.items():
                    kinds.setdefault(dpid, {})[kind] = count
                stats = ControllerStats(msg.request_id, dict(self.packet_in), dict(self.packet_out),
                                        packet_in_by_kind=kinds, dropped=dict(self.dropped),
                                        refused=dict(self.refused))
            self._send(stats)
        elif isinstance(msg, Goodbye):
            raise ConnectionError(f"server said goodbye: {msg.reason}")
        else:
            raise RemoteProtocolError(f"unexpected {type(msg).__name__} from the server")

    def set_relay_map(self, relay: RelayMap) -> None:
        """Replace the slow-path relay table."""
        to_rfvs = {(e.dpid, e.port): (e.rfvs_dpid, e.rfvs_port) for e in relay.entries}
        from_rfvs = {(e.rfvs_dpid, e.rfvs_port): (e.dpid, e.port) for e in relay.entries}
        with self._lock:
            self._to_rfvs, self._from_rfvs = to_rfvs, from_rfvs
        self.logger.info("relay map: %d entries", len(relay.entries))

    def apply_table_mod(self, mod: TableMod) -> None:
        """Send the flow and group changes of ``mod`` to its datapath, in a safe order."""
        with self._lock:
            dp = self._datapaths.get(mod.dpid)
        if dp is None:
            self.logger.warning("table change for datapath %016x, which is not connected", mod.dpid)
            self._send(SwitchError(mod.dpid, "datapath not connected"))
            return
        # Wire bytes straight away (os-ken objects only for shapes ofwire does not write),
        # sent as they are encoded: the switch works while the rest is encoded.
        writer = ofwire.TableModWriter(mod, self._next_xid, SEND_CHUNK)
        for chunk in writer:
            if not dp.send(chunk):
                break
        for error in writer.errors:
            self.logger.error("datapath %016x: %s", mod.dpid, error)
            self._send(SwitchError(mod.dpid, error))
        self.logger.debug("datapath %016x: sent %d messages", mod.dpid, writer.count)

    def _next_xid(self) -> int:
        return next(self._xids) & 0xFFFFFFFF

    def _send_msg(self, dp: Datapath, msg: Any) -> bool:
        msg.set_xid(self._next_xid())
        return bool(dp.send_msg(msg))

    def dump_table(self, request: DumpTable) -> None:
        """Ask the datapath for every flow and group; the reply goes out when both are complete."""
        dpid = request.dpid
        with self._lock:
            dp = self._datapaths.get(dpid)
        if dp is None:
            self._send(TableDump(request.request_id, dpid, (), (), "datapath not connected"))
            return
        flow_req = parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                              0, 0, parser.OFPMatch())
        group_req = parser.OFPGroupDescStatsRequest(dp, 0)
        flow_req.set_xid(self._next_xid())
        group_req.set_xid(self._next_xid())
        xids = (flow_req.xid, group_req.xid)
        dump = _Dump(request.request_id, dpid, xids, self._dump_timer(dpid, xids[0]), waiting=set(xids))
        with self._lock:
            for xid in xids:
                self._dumps[(dpid, xid)] = dump
        dump.timer.start()
        if not (dp.send_msg(flow_req) and dp.send_msg(group_req)):
            self._finish_dump(dpid, xids[0], "datapath disconnected")

    def _dump_timer(self, dpid: int, xid: int) -> threading.Timer:
        timer = threading.Timer(DUMP_TIMEOUT, self._finish_dump, (dpid, xid, "timed out"))
        timer.daemon = True
        return timer

    def _dump_reply(self, dp: Datapath, xid: int, more: bool,
                    decode: Callable[[], tuple[list[Flow], list[Group]]]) -> None:
        dpid: int = dp.id
        with self._lock:
            # unasked for, too late, or from another connection: not worth decoding
            if (dpid, xid) not in self._dumps or not self._current(dp):
                return
        try:
            converted_flows, converted_groups = decode()
        except ofwire.DecodeError as exc:  # a reply we cannot read must not leave the server waiting
            self.logger.warning("datapath %016x: malformed table dump reply: %s", dpid, exc)
            self._finish_dump(dpid, xid, f"unreadable reply: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a backstop: no bug may leave the server waiting either
            self.logger.exception("datapath %016x: unreadable table dump", dpid)
            self._finish_dump(dpid, xid, f"unreadable reply: {exc}")
            return
        with self._lock:
            dump = self._dumps.get((dpid, xid))
            if dump is None:
                return
            dump.flows += converted_flows
            dump.groups += converted_groups
            dump.timer.cancel()
            dump.timer = self._dump_timer(dpid, xid)
            dump.timer.start()
            if not more:
                dump.waiting.discard(xid)
            if dump.waiting:
                # Whole parts go out as the switch's replies come in: a dump is
                # never held whole (a million flows decoded are hundreds of MB).
                # Sent under the lock, so that no error reply overtakes them.
                while len(dump.flows) >= DUMP_PART:
                    part = tuple(dump.flows[:DUMP_PART])
                    del dump.flows[:DUMP_PART]
                    self._send(TableDump(dump.request_id, dpid, part, (), more=True))
                return
        self._finish_dump(dpid, xid)

    def _finish_dump(self, dpid: int, xid: int, error: str = "") -> None:
        with self._lock:
            dump = self._dumps.get((dpid, xid))
            if dump is None:  # already answered
                return
            for key in dump.xids:
                self._dumps.pop((dpid, key), None)
        dump.timer.cancel()
        if error:
            self.logger.warning("datapath %016x: table dump failed: %s", dpid, error)
            reply = TableDump(dump.request_id, dpid, (), (), error)
            self._send(reply)
            return
        for chunk, more in parts(dump.flows, DUMP_PART):
            self._send(TableDump(dump.request_id, dpid, tuple(chunk), () if more else tuple(dump.groups), more=more))

    # -- datapaths ---------------------------------------------------------------------

    def set_discovery_plan(self, plan: DiscoveryPlan) -> None:
        """Probe the ports of ``plan.dpids`` from now on; links elsewhere are forgotten."""
        with self._lock:
            self._probe_dpids = frozenset(plan.dpids)
            self._probe_interval = plan.interval
            self._links.timeout = LINK_TIMEOUT_INTERVALS * plan.interval
            for dpid in set(self._ports) - self._probe_dpids:
                self._report_links(self._links.datapath_gone(dpid))
            targets = self._probe_targets()
        self.logger.info("discovery: probing %d datapaths every %.1f s", len(plan.dpids), plan.interval)
        self._probe(targets)

    def _probe_loop(self) -> None:
        while not self._stopping.wait(self._probe_interval):
            with self._lock:
                targets = self._probe_targets()
                self._report_links(self._links.expire(time.monotonic()))
            self._probe(targets)

    def _probe_targets(self) -> list[tuple[int, PortDesc]]:
        """Every known port of the datapaths in the plan; called holding ``_lock``."""
        return [(dpid, port) for dpid in self._probe_dpids for port in self._ports.get(dpid, {}).values()]

    def _probe(self, targets: list[tuple[int, PortDesc]]) -> None:
        """Send a discovery probe out of each (datapath, port) that is up."""
        for dpid, port in targets:
            with self._lock:
                dp = self._datapaths.get(dpid)
            if dp is None or not port.up:
                continue
            frame = lldp.build_probe(dpid, port.port_no, port.mac)
            self._send_msg(dp, parser.OFPPacketOut(dp, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                                                   [parser.OFPActionOutput(port.port_no, 0)], frame))

    def _report_links(self, changes: list[Change]) -> None:
        """Tell the server; called holding ``_lock``, so link changes keep their order."""
        for change in changes:
            self._send(LinkChange(*change.src, *change.dst, change.up))
            self.logger.info("link %016x:%d -> %016x:%d %s", *change.src, *change.dst,
                             "up" if change.up else "down")

    def _discovery_probe(self, dpid: int, in_port: int, data: bytes) -> None:
        source = lldp.parse_probe(data)
        with self._lock:
            # foreign LLDP, a probe from a plan since replaced, or from no port we probe
            if source is None or source[0] not in self._probe_dpids or source[1] >= ofp.OFPP_MAX:
                self.dropped[dpid] += 1
                return
            self._report_links(self._links.seen(source, (dpid, in_port), time.monotonic()))

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

        Returns the xid of the port description request its join waits for. The ports
        of a connection it replaces stand (the server knows them) until that join.
        """
        xid = self._next_xid()
        self._datapaths[dpid] = dp
        self._port_requests[dpid] = (xid, [])
        return xid

    def _start(self, dp: Datapath, dpid: int, xid: int, replaced: bool = False) -> None:
        """Configure a datapath just registered and ask for its ports."""
        if replaced:
            self.logger.info("datapath %016x reconnected", dpid)
            self._fail_dumps(dpid, "datapath reconnected")
        self.logger.info("datapath %016x connected from %s", dpid, peer(dp))
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
        with self._lock:
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
                self._port_requests.pop(dpid, None)
                if self._ports.pop(dpid, None) is not None:
                    self._report_links(self._links.datapath_gone(dpid))
                    self._send(DatapathLeave(dpid))
        self.logger.info("datapath %016x disconnected", dpid)
        if successor is not None:
            self._start(successor, dpid, xid, replaced=True)
        else:
            self._fail_dumps(dpid, "datapath disconnected")

    def _fail_dumps(self, dpid: int, error: str) -> None:
        with self._lock:
            keys = [key for key in self._dumps if key[0] == dpid]
        for _, xid in keys:
            self._finish_dump(dpid, xid, error)

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
        with self._lock:
            request = self._port_requests.get(dpid)
            if request is None or request[0] != msg.xid or not self._current(dp):
                return
            collected = request[1]
            ports = [p for p in map(port_desc, msg.body) if p is not None]
            if len(collected) + len(ports) > MAX_PORTS:
                self.logger.warning("datapath %016x: more than %d ports, the rest ignored", dpid, MAX_PORTS)
                ports = ports[:max(0, MAX_PORTS - len(collected))]
            collected += ports
            if msg.flags & ofp.OFPMPF_REPLY_MORE:
                return
            del self._port_requests[dpid]
            self._ports[dpid] = {p.port_no: p for p in collected}
            self._send(DatapathJoin(dpid, tuple(sorted(collected))))
        self.logger.info("datapath %016x joined with %d ports", dpid, len(collected))

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
        with self._lock:
            ports = self._ports.get(dpid)
            if ports is None or not self._current(msg.datapath):  # before the join, its reply covers this
                return
            if not deleted and port.port_no not in ports and len(ports) >= MAX_PORTS:
                self.logger.warning("datapath %016x: more than %d ports, port %d ignored", dpid, MAX_PORTS,
                                    port.port_no)
                return
            if deleted:
                ports.pop(port.port_no, None)
            else:
                ports[port.port_no] = port
            self._send(PortChange(dpid, port, deleted))
            if deleted or not port.up:
                self._report_links(self._links.port_down((dpid, port.port_no)))
            reprobe = dpid in self._probe_dpids and port.up and not deleted
        if reprobe:  # a link back up is wired again at once, not at the next round
            self._probe([(dpid, port)])
        self.logger.info("datapath %016x port %d %s: %s", dpid, port.port_no, port.name,
                         "deleted" if deleted else "up" if port.up else "down")

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats_reply(self, ev: Any) -> None:
        msg = ev.msg

        def decode() -> tuple[list[Flow], list[Group]]:
            if msg.buf is not None:  # off the wire: decode the raw bytes
                return ofwire.decode_flow_stats(msg.buf, end=msg.msg_len), []
            return [ofcodec.flow_from_stats(s) for s in msg.body], []

        self._dump_reply(msg.datapath, msg.xid, bool(msg.flags & ofp.OFPMPF_REPLY_MORE), decode)

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def _group_desc_reply(self, ev: Any) -> None:
        msg = ev.msg

        def decode() -> tuple[list[Flow], list[Group]]:
            if msg.buf is not None:
                return [], ofwire.decode_group_desc(msg.buf, end=msg.msg_len)
            return [], [ofcodec.group_from_stats(s) for s in msg.body]

        self._dump_reply(msg.datapath, msg.xid, bool(msg.flags & ofp.OFPMPF_REPLY_MORE), decode)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        dpid = msg.datapath.id
        text = error_text(msg)
        self.logger.warning("datapath %s: %s", "?" if dpid is None else f"{dpid:016x}", text)
        with self._lock:
            if not self._current(msg.datapath):  # not through the handshake, or not the datapath's connection
                return
            dumping = (dpid, msg.xid) in self._dumps
        if dumping:
            self._finish_dump(dpid, msg.xid, text)
        else:
            self._send(SwitchError(dpid, text))

    # -- slow path -----------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        dpid = msg.datapath.id
        try:
            in_port = msg.match["in_port"]
            data = bytes(msg.data)
            total_len = int(msg.total_len)
        except (KeyError, TypeError, AttributeError, ValueError):
            in_port = None
        malformed = type(in_port) is not int  # a masked in_port is a tuple: no port to relay from
        with self._lock:
            if not self._current(msg.datapath):  # not a word of a held or refused connection gets through
                return
            self.packet_in[dpid] += 1
            if malformed:
                self.dropped[dpid] += 1
            else:
                self.packet_in_kinds[dpid, traffic_kind(data)] += 1
                on_rfvs = dpid in self._rfvs
                target = (self._from_rfvs if on_rfvs else self._to_rfvs).get((dpid, in_port))
                out_dp = self._datapaths.get(target[0]) if target is not None else None
        if malformed:
            self.logger.debug("datapath %016x: malformed packet-in dropped", dpid)
            return
        if on_rfvs and data[12:14] == _MAPPING_ETH_TYPE:
            self._mapping_packet(dpid, in_port, data)
            return
        if not on_rfvs and data[12:14] == _LLDP_ETH_TYPE:
            self._discovery_probe(dpid, in_port, data)
            return
        # A truncated packet (switch ignored miss_send_len) cannot be relayed faithfully,
        # nor one too large for a packet-out.
        if out_dp is None or target is None or len(data) < total_len or len(data) > _MAX_RELAY:
            with self._lock:
                self.dropped[dpid] += 1
            return
        out = parser.OFPPacketOut(out_dp, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                                  [parser.OFPActionOutput(target[1], 0)], data)
        if self._send_msg(out_dp, out):
            with self._lock:
                self.packet_out[target[0]] += 1

    def _mapping_packet(self, dpid: int, port: int, data: bytes) -> None:
        try:
            packet = mapping.decode(data)
        except mapping.MappingPacketError as exc:
            self.logger.debug("rfvs %016x port %d: bad mapping packet: %s", dpid, port, exc)
            with self._lock:
                self.dropped[dpid] += 1
            return
        try:  # the server refuses (and hangs up on) a message with a name no interface can have
            msgspec.convert(packet.ifname, IfName)
        except msgspec.ValidationError as exc:
            self.logger.debug("rfvs %016x port %d: bad mapping packet: %s", dpid, port, exc)
            with self._lock:
                self.dropped[dpid] += 1
            return
        self.logger.debug("mapping packet from %s/%s on rfvs port %d", packet.vm, packet.ifname, port)
        self._send(MappingSeen(dpid, port, packet.vm, packet.ifname))


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
