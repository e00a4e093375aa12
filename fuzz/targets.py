"""The fuzz targets: one per surface where routeflow reads what others send it.

=====================  ======================================================================
target                 contract checked
=====================  ======================================================================
rf_protocol            bytes (in any chunks) -> ``codec.Connection.receive_data``: messages, or
                       ``RemoteProtocolError`` and nothing else; the buffer stays bounded; what
                       decodes re-encodes; the handshake checks raise ``RemoteProtocolError`` only
server_core            event sequences (peers connecting and leaving, every message a controller
                       or a client may send, as msgpack through the codec, reconciles, resolution
                       ticks, status) -> ``ServerCore``: no exception ever (the core documents
                       none), every datapath's table computable, every command it emits encodable
                       and accepted by its peer's decoder
openflow_replies       bytes -> ``fast_decode.decode_flow_stats`` / ``decode_group_desc`` /
                       ``reply_body_span``: values or ``DecodeError``, no more values than the
                       bytes allow
openflow_messages      a switch's message -> os-ken's parser behind ``guards.install_parser_guards``
                       (and ``install_raw_stats_replies``): a message or None, never an exception;
                       a lazy multipart body reads or raises ``DecodeError``
netlink                datagrams -> ``netlink.messages`` / ``route`` / ``nexthop`` (a record or None),
                       ``link`` / ``address`` / ``neighbour`` (that, or ``Malformed``), and
                       ``FibState.apply_datagram`` then ``take_delta``, ``fib``, ``resync``: never
                       raises (optionally on top of a golden dump's state)
frames                 bytes -> ``lldp.parse_probe`` (None or a probe), ``mapping.decode`` (a packet
                       or ``MappingPacketError``), ``classify.traffic_kind``; probe and mapping
                       packet encoders round-trip
config                 documents, YAML text and file bytes -> ``parse_config`` / ``parse_yaml`` /
                       ``load_config``: a Config or ``ConfigError`` naming the source on every line
topology               the same for ``parse_topology`` / ``load_topology``
=====================  ======================================================================

Every target runs its seed corpus (``fuzz/seeds.py``) first; the strategies then
mutate those seeds (byte mutations aware of the length fields of each format, or
structural ones for documents and message sequences) or generate from scratch.
"""

from __future__ import annotations

import atexit
import copy
import functools
import shutil
import struct
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import yaml
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from fuzz import seeds
from fuzz.engine import Target
from fuzz.strategies import LengthField, any_int, for_type, loose_messages, messages_of, msgpack_values, mutated
from routeflow import model
from routeflow.client import netlink as rtnl
from routeflow.client.fib import FibState
from routeflow.config.loader import load_config, parse_config
from routeflow.config.safe_yaml import parse_yaml
from routeflow.config.schema import Config
from routeflow.controller.classify import traffic_kind
from routeflow.controller.openflow import fast_decode, guards
from routeflow.controller.openflow.errors import DecodeError
from routeflow.errors import ConfigError
from routeflow.lab.topology import load_topology, parse_topology
from routeflow.model import Flow
from routeflow.protocol import codec, lldp, mapping
from routeflow.protocol.messages import (
    ACCEPTED,
    PROTOCOL_VERSION,
    AnyMessage,
    DatapathJoin,
    DatapathLeave,
    FibAudit,
    FibDelta,
    FibSnapshot,
    Goodbye,
    Hello,
    LinkChange,
    MappingSeen,
    Message,
    PortChange,
    StatusReply,
    SwitchError,
    TableDump,
    TableMod,
)
from routeflow.server.core import CONTROLLER, Out, ServerCore
from routeflow.server.status import status_document

# -- helpers -----------------------------------------------------------------------------------

_PACK = msgspec.msgpack.Encoder()
_UNPACK = msgspec.msgpack.Decoder()


def packed(value: Any) -> bytes:
    return _PACK.encode(value)


def unpacked(data: bytes) -> Any:
    return _UNPACK.decode(data)


def show_bytes(data: bytes) -> str:
    return f"bytes.fromhex({data.hex()!r})  # {len(data)} bytes"


def _stage(name: str, call: Callable[[], Any]) -> Any:
    """``call()``; an exception says which call of the check raised it."""
    try:
        return call()
    except Exception as exc:
        exc.add_note(f"[fuzz] raised by: {name}")
        raise


def _pattern(annotated: Any) -> str:
    return str(typing.get_args(annotated)[1].pattern)


def frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


def decode_frame(body: bytes, max_frame: int = codec.MAX_FRAME) -> Message | None:
    """The message a peer's connection makes of one frame, or None if it closes the peer."""
    try:
        (msg,) = codec.Connection(max_frame).receive_data(frame(body))
    except codec.RemoteProtocolError:
        return None
    return msg


# -- values of the model's types, mostly ones the configs below know ----------------------------

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

_IP = st.one_of(st.sampled_from(IP_POOL), st.ip_addresses().map(str),
                st.from_regex(_pattern(model.IpAddress), fullmatch=True))


@st.composite
def _prefix(draw: Any) -> str:
    address = draw(st.ip_addresses())
    return f"{address}/{draw(st.integers(0, address.max_prefixlen))}"


PATTERN_HINTS = {
    _pattern(model.IpAddress): _IP,
    _pattern(model.IpWithLength): st.one_of(st.sampled_from(PREFIX_POOL), _prefix(),
                                            st.from_regex(_pattern(model.IpWithLength), fullmatch=True)),
    _pattern(model.IfName): st.one_of(st.sampled_from(IFNAMES), st.from_regex(_pattern(model.IfName),
                                                                              fullmatch=True)),
    _pattern(model.Mac): st.one_of(st.sampled_from(MACS), st.from_regex(_pattern(model.Mac), fullmatch=True)),
    _pattern(model.ProtoName): st.one_of(st.sampled_from(["", "kernel", "ospf", "bgp", "static", "186"]),
                                         st.from_regex(_pattern(model.ProtoName), fullmatch=True)),
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


# -- known issues ------------------------------------------------------------------------------
# Found by these targets, reported, not fixed yet (the code is not this harness's to change).
# Each has a regression input under fuzz/regressions/<target>/ that tests/unit/test_fuzz_smoke.py
# replays as xfail(strict=True): once fixed, that test fails until the entry here and its
# xfail mark are removed, so a fix cannot go unnoticed. None is open now.


# -- rf_protocol -------------------------------------------------------------------------------

_ALL_TYPES: list[type[Message]] = list(typing.get_args(AnyMessage))
_KEY = b"k" * 32
_HELLO = Hello(PROTOCOL_VERSION, "client", "rA", "0" * 32)


def _rf_streams() -> st.SearchStrategy[bytes]:
    encoded = [codec.encode(m) for m in seeds.rf_messages()]
    joined = [encoded[i] + encoded[(i * 5 + 1) % len(encoded)] for i in range(len(encoded))]
    typed = messages_of(_ALL_TYPES, _model_hints(), PATTERN_HINTS)
    seeded = mutated(encoded + joined, fields=lambda b: [(0, 4, "big")], orders=("big",))
    return st.one_of(
        seeded,
        seeded,
        seeded,
        typed.map(codec.encode),
        loose_messages(_ALL_TYPES, typed).map(frame),
        msgpack_values().map(lambda v: frame(packed(v))),
        st.binary(max_size=64).map(frame),
        st.binary(max_size=64),
        st.lists(st.sampled_from(encoded), min_size=2, max_size=4).map(b"".join),
    )


@st.composite
def _chunked(draw: Any, streams: st.SearchStrategy[bytes]) -> tuple[int, list[bytes]]:
    data = draw(streams)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=4))))
    bounds = [0, *cuts, len(data)]
    return draw(st.sampled_from([0, 1])), [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def check_rf_protocol(value: tuple[int, list[bytes]]) -> None:
    limit_kind, chunks = value
    conn = codec.Connection(codec.HELLO_MAX_FRAME if limit_kind else codec.MAX_FRAME)
    first = True
    for chunk in chunks:
        try:
            received = conn.receive_data(chunk)
        except codec.RemoteProtocolError:
            return  # the peer is closed
        assert conn.buffered < 4 + conn.max_frame, f"{conn.buffered} bytes buffered"
        for msg in received:
            assert isinstance(msg, Message), type(msg)
            again = codec.encode(msg)
            (back,) = codec.Connection().receive_data(again)
            assert codec.encode(back) == again, "a decoded message does not re-encode the same"
            checks: list[tuple[str, Callable[[], Any]]] = [
                ("check_welcome", lambda: codec.check_welcome(msg)),
                ("answer_challenge", lambda: codec.answer_challenge(msg, _KEY, _HELLO)),
                *((f"check_accepted({role})", lambda role=role: codec.check_accepted(role, msg))  # type: ignore
                  for role in ACCEPTED)]
            if first:
                checks.append(("check_hello", lambda: codec.check_hello(msg)))
            first = False
            for name, call in checks:
                try:
                    _stage(name, call)
                except codec.RemoteProtocolError:
                    pass


def rf_protocol() -> Target:
    return Target(
        name="rf_protocol",
        doc="RF-protocol framing and decoding (codec.Connection.receive_data, the handshake checks)",
        strategy=_chunked(_rf_streams()),
        check=check_rf_protocol,
        seeds=lambda: [(kind, [codec.encode(m)]) for m in seeds.rf_messages() for kind in (0, 1)]
        + [(0, [b"".join(codec.encode(m) for m in seeds.rf_messages())])],
        dump=lambda v: packed([v[0], v[1]]),
        load=lambda b: (unpacked(b)[0], list(unpacked(b)[1])),
        show=lambda v: f"max_frame={'HELLO_MAX_FRAME' if v[0] else 'MAX_FRAME'}, chunks=" + repr(
            [c.hex() for c in v[1]]),
    )


# -- server_core -------------------------------------------------------------------------------

CONTROLLER_TYPES = [t for t in ACCEPTED["controller"] if t is not Goodbye]
CLIENT_TYPES = [t for t in ACCEPTED["client"] if t is not Goodbye]


@functools.cache
def core_configs() -> list[Config]:
    return [parse_config(doc, f"<fuzz config {i}>") for i, doc in enumerate(seeds.CORE_CONFIGS)]


@functools.cache
def _compiled_flows() -> list[Flow]:
    """Flows the core itself emits for the seed scenarios: a switch reporting them back is
    what makes dumps and diffs interesting."""
    flows: list[Flow] = []
    for scenario in seeds.core_scenarios():
        index, events = _packed_scenario(scenario)
        driver = CoreDriver(core_configs()[index])
        driver.run(events)
        flows += [f for out in driver.sent if isinstance(out.msg, TableMod) for f in out.msg.add]
    return flows or [seeds.FLOW]


def _pooled(pool: list[Any], generic: st.SearchStrategy[Any], max_size: int = 4) -> st.SearchStrategy[Any]:
    """Tuples of values mostly from ``pool`` (cheap to draw, and known to the config), some generic."""
    one = st.one_of(st.sampled_from(pool), st.sampled_from(pool), st.sampled_from(pool), generic)
    return st.lists(one, max_size=max_size).map(tuple)


def _model_hints() -> dict[str, st.SearchStrategy[Any]]:
    """Fields of FIBs and tables drawn mostly from what the seeds and configs hold."""
    info = msgspec.inspect.type_info
    fibs = [seeds.FIB] + [e[-1].fib for _, events in seeds.core_scenarios() for e in events
                          if isinstance(e[-1], FibSnapshot)]
    interfaces = [i for f in fibs for i in f.interfaces] + [
        model.Interface("eth3", "02:00:00:00:00:03", False, ("10.0.12.1/24",)),
        model.Interface("lo", "00:00:00:00:00:00", True, ("10.255.0.1/32", "2001:db8:ff::1/128"))]
    routes = [r for f in fibs for r in f.routes] + [
        model.Route("0.0.0.0/0", (model.NextHop("eth1", "172.31.1.2"),)),
        model.Route("::/0", (model.NextHop("eth2", "fe80::9"), model.NextHop("eth2", "2001:db8:2::2"))),
        model.Route("172.31.2.99/32", (model.NextHop("eth9", "172.31.9.1"),), "unreachable")]
    neighbours = [n for f in fibs for n in f.neighbours] + [
        model.Neighbour("eth2", "172.31.2.99", "0a:00:00:00:00:99"), model.Neighbour("eth3", "10.0.12.2", MACS[1])]
    generic = {name: for_type(info(cls), FIELD_HINTS, PATTERN_HINTS)
               for name, cls in (("i", model.Interface), ("r", model.Route), ("n", model.Neighbour))}
    flows = _compiled_flows()
    generic_flow = for_type(info(Flow), FIELD_HINTS, PATTERN_HINTS)
    return {**FIELD_HINTS,
            "Fib.interfaces": _pooled(interfaces, generic["i"], 3),
            "FibDelta.interfaces_set": _pooled(interfaces, generic["i"], 2),
            "Fib.routes": _pooled(routes, generic["r"], 5),
            "FibDelta.routes_set": _pooled(routes, generic["r"], 3),
            "FibDelta.routes_del": _pooled([r.prefix for r in routes], PATTERN_HINTS[_pattern(model.IpWithLength)], 3),
            "Fib.neighbours": _pooled(neighbours, generic["n"], 3),
            "FibDelta.neighbours_set": _pooled(neighbours, generic["n"], 3),
            "FibDelta.neighbours_del": _pooled([(n.ifname, n.ip) for n in neighbours],
                                               st.tuples(PATTERN_HINTS[_pattern(model.IfName)], _IP), 3),
            "TableDump.flows": _pooled(flows, generic_flow, 8),
            "Flow.match": st.one_of(st.sampled_from([f.match for f in flows]),
                                    for_type(typing.cast(msgspec.inspect.StructType, info(Flow)).fields[2].type))}


def _core_events() -> st.SearchStrategy[tuple[int, list[tuple[Any, ...]]]]:
    hints = _model_hints()
    controller_typed = messages_of(CONTROLLER_TYPES, hints, PATTERN_HINTS)
    client_typed = messages_of(CLIENT_TYPES, hints, PATTERN_HINTS)
    controller_body = st.one_of(controller_typed.map(packed), controller_typed.map(packed),
                                controller_typed.map(packed), loose_messages(CONTROLLER_TYPES, controller_typed))
    client_body = st.one_of(client_typed.map(packed), client_typed.map(packed), client_typed.map(packed),
                            loose_messages(CLIENT_TYPES, client_typed))
    vm = st.sampled_from(["rA", "rB"])
    event = st.one_of(
        st.tuples(st.just("controller"), controller_body),
        st.tuples(st.just("client"), vm, client_body),
        st.tuples(st.just("controller"), controller_body),
        st.tuples(st.just("client"), vm, client_body),
        st.just(("reconcile",)),
        st.just(("controller_up",)),
        st.just(("controller_down",)),
        st.tuples(st.just("client_up"), vm),
        st.tuples(st.just("client_down"), vm),
        st.tuples(st.just("resolve"), st.floats(0, 1e6)),
        st.tuples(st.just("status"), st.booleans()),
    )
    scenarios = seeds.core_scenarios()
    seeded = st.sampled_from([_packed_scenario(s) for s in scenarios])

    @st.composite
    def from_seed(draw: Any) -> tuple[int, list[tuple[Any, ...]]]:
        index, events = draw(seeded)
        events = list(events)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.integers(0, 2))
            if op == 0 and events:
                del events[draw(st.integers(0, len(events) - 1))]
            else:
                events.insert(draw(st.integers(0, len(events))), draw(event))
        return index, events

    fresh = st.tuples(st.sampled_from(range(len(core_configs()))), st.lists(event, max_size=16))
    return st.one_of(from_seed(), fresh)


def _packed_scenario(scenario: tuple[int, list[tuple[Any, ...]]]) -> tuple[int, list[tuple[Any, ...]]]:
    """Messages as the msgpack bodies peers send."""
    index, events = scenario
    return index, [tuple(packed(x) if isinstance(x, Message) else x for x in event) for event in events]


#: Controller reports the service hands the core as they come (service._CONTROLLER_EVENTS).
CONTROLLER_EVENTS: dict[type[Message], str] = {
    DatapathJoin: "on_datapath_join",
    DatapathLeave: "on_datapath_leave",
    PortChange: "on_port_change",
    MappingSeen: "on_mapping_seen",
    LinkChange: "on_link_change",
    SwitchError: "on_switch_error",
}


class CoreDriver:
    """Drives a ServerCore as ``service.RFServer`` does: peers connect before they speak, a
    message the codec refuses or the role may not send closes its peer, snapshots and dumps
    reach the core whole. Checks everything the core returns."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.core = ServerCore(config)
        self.controller = False
        self.clients: set[str] = set()
        self.snapshots: dict[str, list[FibSnapshot]] = {}
        self.dumps: dict[int, list[TableDump]] = {}
        self.peers = {CONTROLLER, *(vm.name for vm in config.vms)}
        #: Everything the core returned.
        self.sent: list[Out] = []

    def emit(self, where: str, out: list[Out]) -> None:
        self.sent += out
        for item in out:
            assert isinstance(item, Out) and item.to in self.peers, f"{where}: {item!r}"
            data = _stage(f"codec.encode of {type(item.msg).__name__} from {where}", lambda: codec.encode(item.msg))
            back = decode_frame(data[4:])
            assert back is not None, f"{where} emitted {item.msg!r}, which its peer's decoder refuses"

    def call(self, name: str, *args: Any) -> None:
        self.emit(name, _stage(f"ServerCore.{name}", lambda: getattr(self.core, name)(*args)))

    def controller_up(self) -> None:
        if self.controller:  # the newest controller wins: the old one is dropped first
            self.controller_down()
        self.controller = True
        self.call("on_controller_up")

    def controller_down(self) -> None:
        if self.controller:
            self.controller = False
            self.dumps.clear()
            self.call("on_controller_down")

    def client_up(self, vm: str) -> None:
        self.clients.add(vm)
        self.snapshots.pop(vm, None)
        self.call("on_client_up", vm)

    def client_down(self, vm: str) -> None:
        if vm in self.clients:
            self.clients.discard(vm)
            self.snapshots.pop(vm, None)
            self.call("on_client_down", vm)

    def from_controller(self, body: bytes) -> None:
        if not self.controller:
            self.controller_up()
        msg = decode_frame(body)
        if msg is None or not isinstance(msg, ACCEPTED["controller"]) or isinstance(msg, Goodbye):
            self.controller_down()
            return
        if isinstance(msg, TableDump):
            parts = self.dumps.setdefault(msg.request_id, [])
            parts.append(msg)
            if msg.more:
                return
            del self.dumps[msg.request_id]
            whole = msg if len(parts) == 1 else TableDump(msg.request_id, msg.dpid, tuple(
                f for p in parts for f in p.flows), msg.groups, msg.error)
            self.call("on_table_dump", whole)
            return
        handler = CONTROLLER_EVENTS.get(type(msg))
        if handler is not None:  # the others are the service's business (pongs, stats)
            self.call(handler, msg)

    def from_client(self, vm: str, body: bytes) -> None:
        if vm not in self.clients:
            self.client_up(vm)
        msg = decode_frame(body)
        if msg is None or not isinstance(msg, ACCEPTED["client"]) or isinstance(msg, Goodbye):
            self.client_down(vm)
            return
        if isinstance(msg, FibSnapshot):
            if msg.request_id:
                return  # a reply to the service's own request
            parts = self.snapshots.setdefault(vm, [])
            parts.append(msg)
            if msg.more:
                return
            del self.snapshots[vm]
            fib = model.Fib(tuple(i for p in parts for i in p.fib.interfaces),
                            tuple(r for p in parts for r in p.fib.routes),
                            tuple(n for p in parts for n in p.fib.neighbours))
            self.call("on_fib_snapshot", vm, FibSnapshot(fib))
        elif isinstance(msg, FibDelta):
            self.call("on_fib_delta", vm, msg)
        elif isinstance(msg, FibAudit):
            self.call("on_fib_audit", vm, msg)

    def reconcile(self) -> None:
        self.call("reconcile")
        for dpid, dp in self.core.nib.datapaths.items():
            assert not dp.compile_error, f"datapath {dpid:#x}: table not computable: {dp.compile_error}"

    def status(self, detail: bool) -> None:
        document = _stage("status_document", lambda: status_document(self.core.nib, detail=detail))
        _stage("StatusReply encoding", lambda: codec.encode(StatusReply(1, document)))

    def run(self, events: list[tuple[Any, ...]]) -> None:
        for event in events:
            kind = event[0]
            if kind == "controller":
                self.from_controller(event[1])
            elif kind == "client":
                self.from_client(event[1], event[2])
            elif kind == "controller_up":
                self.controller_up()
            elif kind == "controller_down":
                self.controller_down()
            elif kind == "client_up":
                self.client_up(event[1])
            elif kind == "client_down":
                self.client_down(event[1])
            elif kind == "reconcile":
                self.reconcile()
            elif kind == "resolve":
                self.call("resolve_due", float(event[1]))
            elif kind == "status":
                self.status(bool(event[1]))
        self.reconcile()
        self.call("resolve_due", 1e9)
        self.status(True)


def check_server_core(value: tuple[int, list[tuple[Any, ...]]]) -> None:
    index, events = value
    config = core_configs()[index]
    names = {vm.name for vm in config.vms}
    # A client of a VM the config does not name is refused at its hello: it never reaches the core.
    events = [e for e in events if e[0] not in ("client", "client_up", "client_down") or e[1] in names]
    CoreDriver(config).run(events)


def _show_core(value: tuple[int, list[tuple[Any, ...]]]) -> str:
    index, events = value
    lines = [f"config {index}: {seeds.CORE_CONFIGS[index]}"]
    for event in events:
        shown = []
        for x in event:
            if isinstance(x, bytes):
                msg = decode_frame(x)
                shown.append(repr(msg) if msg is not None else f"<refused by the codec: {unpacked_or_hex(x)}>")
            else:
                shown.append(repr(x))
        lines.append("  " + ", ".join(shown))
    return "\n".join(lines)


def unpacked_or_hex(data: bytes) -> str:
    try:
        return repr(unpacked(data))
    except msgspec.DecodeError:
        return data.hex()


def server_core() -> Target:
    return Target(
        name="server_core",
        doc="ServerCore driven like the service, by every message a controller or client may send",
        strategy=_core_events(),
        check=check_server_core,
        seeds=lambda: [_packed_scenario(s) for s in seeds.core_scenarios()],
        dump=lambda v: packed([v[0], [list(e) for e in v[1]]]),
        load=lambda b: (unpacked(b)[0], [tuple(e) for e in unpacked(b)[1]]),
        show=_show_core,
    )


# -- openflow_replies --------------------------------------------------------------------------


def of_length_fields(buf: bytes) -> list[LengthField]:
    """Length fields of a flow-stats or group-desc reply (every nesting level), from the spec."""
    fields: list[LengthField] = [(2, 2, "big")]
    if len(buf) < 16:
        return fields
    (kind,) = struct.unpack_from("!H", buf, 8)

    def actions(pos: int, end: int, depth: int = 0) -> None:
        while pos + 4 <= end and depth < 4:
            action_type, length = struct.unpack_from("!HH", buf, pos)
            fields.append((pos + 2, 2, "big"))
            if action_type == ofp.OFPAT_SET_FIELD:
                fields.append((pos + 7, 1, "big"))
            elif action_type == ofp.OFPAT_EXPERIMENTER and pos + 10 <= end and struct.unpack_from(
                    "!IH", buf, pos + 4) == (0x2320, 35):
                actions(pos + 24, pos + length, depth + 1)
            if length < 8:
                return
            pos += length

    offset = 16
    while offset + 8 <= len(buf):
        (length,) = struct.unpack_from("!H", buf, offset)
        fields.append((offset, 2, "big"))
        end = min(offset + length, len(buf))
        if kind == ofp.OFPMP_FLOW and offset + 52 <= len(buf):
            match = offset + 48
            (match_len,) = struct.unpack_from("!H", buf, match + 2)
            fields.append((match + 2, 2, "big"))
            pos = match + 4
            while pos + 4 <= min(match + match_len, end):
                fields.append((pos + 3, 1, "big"))
                pos += 4 + buf[pos + 3]
            pos = match + (match_len + 7) // 8 * 8
            while pos + 4 <= end:
                inst_type, inst_len = struct.unpack_from("!HH", buf, pos)
                fields.append((pos + 2, 2, "big"))
                if inst_type in (ofp.OFPIT_WRITE_ACTIONS, ofp.OFPIT_APPLY_ACTIONS):
                    actions(pos + 8, min(pos + inst_len, end))
                if inst_len < 8:
                    break
                pos += inst_len
        elif kind == ofp.OFPMP_GROUP_DESC:
            pos = offset + 8
            while pos + 16 <= end:
                (bucket_len,) = struct.unpack_from("!H", buf, pos)
                fields.append((pos, 2, "big"))
                actions(pos + 16, min(pos + bucket_len, end))
                if bucket_len < 16:
                    break
                pos += bucket_len
        if length < 8:
            break
        offset += length
    return fields


def check_openflow_replies(buf: bytes) -> None:
    try:
        _, end = _stage("reply_body_span", lambda: fast_decode.reply_body_span(buf))
    except DecodeError:
        end = None
    body = max(len(buf) - 16, 0)
    for stop in {None, end}:
        try:
            flows = _stage("decode_flow_stats", lambda: fast_decode.decode_flow_stats(buf, end=stop))
            assert len(flows) <= body // 56 and all(isinstance(f, Flow) for f in flows), flows
        except DecodeError:
            pass
        try:
            groups = _stage("decode_group_desc", lambda: fast_decode.decode_group_desc(buf, end=stop))
            assert len(groups) <= body // 8, groups
            assert sum(len(a) for g in groups for a in g.buckets) <= body // 8, groups
        except DecodeError:
            pass


def openflow_replies() -> Target:
    small = seeds.of_small_replies()
    return Target(
        name="openflow_replies",
        doc="fast_decode.decode_flow_stats / decode_group_desc / reply_body_span on switch replies",
        strategy=st.one_of(
            mutated(small, fields=of_length_fields, orders=("big",)),
            mutated(small, fields=of_length_fields, orders=("big",)),
            mutated(small, fields=of_length_fields, orders=("big",), max_ops=8),
            st.sampled_from(small),
            st.binary(max_size=128).map(lambda b: seeds.MP_HEADER.pack(4, 19, 16 + len(b), 1, 1, 0) + b),
            st.binary(max_size=128),
        ),
        check=check_openflow_replies,
        seeds=lambda: seeds.of_golden_replies() + small,
        show=show_bytes,
    )


# -- openflow_messages -------------------------------------------------------------------------


class FuzzDatapath:
    """What os-ken's parsers read of a datapath."""

    ofproto = ofp
    ofproto_parser = parser
    id = 1
    address = ("fuzz", 0)


_DATAPATH = FuzzDatapath()


@functools.cache
def _install_guards() -> None:
    guards.install_raw_stats_replies()
    guards.install_parser_guards()


def check_openflow_messages(data: bytes) -> None:
    _install_guards()
    if len(data) < ofp.OFP_HEADER_SIZE:
        return  # os-ken waits for the rest of the header
    version, msg_type, msg_len, xid = struct.unpack_from("!BBHI", data)
    if msg_len < ofp.OFP_HEADER_SIZE:
        return  # os-ken closes the switch
    buf = data[:msg_len] + bytes(max(msg_len - len(data), 0))  # os-ken reads exactly msg_len bytes
    msg = _stage("ofproto_parser.msg (guarded)",
                 lambda: ofproto_parser.msg(_DATAPATH, version, msg_type, msg_len, xid, buf))
    if msg is None:
        return
    body = getattr(msg, "body", None)
    if isinstance(body, guards.LazyBody):
        try:
            _stage("LazyBody", lambda: len(body))
        except DecodeError:
            pass
        try:
            if msg.type == ofp.OFPMP_FLOW:
                _stage("decode_flow_stats", lambda: fast_decode.decode_flow_stats(msg.buf, end=msg.msg_len))
            else:
                _stage("decode_group_desc", lambda: fast_decode.decode_group_desc(msg.buf, end=msg.msg_len))
        except DecodeError:
            pass
    if msg_type == ofp.OFPT_PACKET_IN:
        _stage("traffic_kind", lambda: traffic_kind(bytes(msg.data)))


def _of_header_fields(buf: bytes) -> list[LengthField]:
    return [(2, 2, "big"), (1, 1, "big"), (0, 1, "big"), *of_length_fields(buf)]


def openflow_messages() -> Target:
    messages = seeds.of_messages()
    return Target(
        name="openflow_messages",
        doc="os-ken's parsing of a switch's messages behind the parser guards of routeflow.controller.openflow.guards",
        strategy=st.one_of(
            mutated(messages, fields=_of_header_fields, orders=("big",)),
            mutated(messages, fields=_of_header_fields, orders=("big",)),
            st.tuples(st.integers(0, 255), st.integers(0, 40), st.binary(max_size=96)).map(
                lambda v: struct.pack("!BBHI", 4 if v[0] % 2 else v[0], v[1], 8 + len(v[2]), 1) + v[2]),
        ),
        check=check_openflow_messages,
        seeds=lambda: list(messages) + seeds.of_golden_replies(),
        show=show_bytes,
    )


# -- netlink -----------------------------------------------------------------------------------

#: Fixed header after nlmsghdr, by message type.
_NL_FIXED = {16: 16, 17: 16, 20: 8, 21: 8, 24: 12, 25: 12, 28: 12, 29: 12, 104: 8, 105: 8}


def netlink_length_fields(data: bytes) -> list[LengthField]:
    """nlmsghdr lengths and attribute lengths (nested and multipath ones too)."""
    fields: list[LengthField] = []

    def attributes(pos: int, end: int, depth: int) -> None:
        while pos + 4 <= end and depth < 4:
            length, kind = struct.unpack_from("=HH", data, pos)
            fields.append((pos, 2, "little"))
            if length < 4:
                return
            payload, stop = pos + 4, min(pos + length, end)
            if kind & 0x3FFF == rtnl.ATTRIBUTE["RTA_MULTIPATH"]:
                leg = payload
                while leg + 8 <= stop:
                    (leg_len,) = struct.unpack_from("=H", data, leg)
                    fields.append((leg, 2, "little"))
                    attributes(leg + 8, min(leg + leg_len, stop), depth + 1)
                    if leg_len < 8:
                        break
                    leg += (leg_len + 3) & ~3
            elif stop - payload >= 4 and 4 <= struct.unpack_from("=H", data, payload)[0] <= stop - payload:
                attributes(payload, stop, depth + 1)  # looks nested
            pos += (length + 3) & ~3

    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        fields.append((offset, 4, "little"))
        end = min(offset + length, len(data))
        fixed = _NL_FIXED.get(kind)
        if fixed is not None:
            attributes(offset + 16 + fixed, end, 0)
        if length < 16:
            break
        offset += (length + 3) & ~3
    return fields


@functools.cache
def _base_states() -> list[FibState]:
    return [FibState.load(list(dump)) for dump in seeds.netlink_dumps()]


def _fib_state(base: int) -> FibState:
    if base < 0:
        return FibState()
    return copy.deepcopy(_base_states()[base % len(_base_states())])


#: The decoders that reject a malformed message with Malformed, and the record each returns.
_NL_RECORDS: dict[int, tuple[Callable[[bytes, int, int], Any], type]] = {
    rtnl.RTM_NEWLINK: (rtnl.link, rtnl.Link), rtnl.RTM_DELLINK: (rtnl.link, rtnl.Link),
    rtnl.RTM_NEWADDR: (rtnl.address, rtnl.Address), rtnl.RTM_DELADDR: (rtnl.address, rtnl.Address),
    rtnl.RTM_NEWNEIGH: (rtnl.neighbour, rtnl.NeighbourEntry), rtnl.RTM_DELNEIGH: (rtnl.neighbour, rtnl.NeighbourEntry),
}


def check_netlink(value: tuple[int, list[bytes]]) -> None:
    base, datagrams = value
    state = _fib_state(base)
    for data in datagrams:
        for kind, _, start, end in _stage("netlink.messages", lambda: list(rtnl.messages(data))):
            assert 0 <= start < end <= len(data), (start, end)
            if kind in (rtnl.RTM_NEWROUTE, rtnl.RTM_DELROUTE):
                decoded = _stage("netlink.route", lambda: rtnl.route(data, start, end))
                assert decoded is None or isinstance(decoded, rtnl.KernelRoute)
            elif kind in (rtnl.RTM_NEWNEXTHOP, rtnl.RTM_DELNEXTHOP):
                obj = _stage("netlink.nexthop", lambda: rtnl.nexthop(data, start, end))
                assert obj is None or isinstance(obj, rtnl.NexthopObject)
            elif kind in _NL_RECORDS:
                decode, record = _NL_RECORDS[kind]
                try:
                    decoded = _stage(f"netlink.{decode.__name__}", lambda: decode(data, start, end))
                except rtnl.Malformed:
                    continue
                assert decoded is None or isinstance(decoded, record)
        _stage("FibState.apply_datagram", lambda: state.apply_datagram(data))
        _stage("FibState.take_delta", state.take_delta)
    _stage("FibState.fib", state.fib)
    _stage("FibState.nics", state.nics)
    _stage("FibState.resync", lambda: state.resync(datagrams))
    _stage("FibState.take_delta after resync", state.take_delta)


def netlink() -> Target:
    datagrams = seeds.netlink_datagrams()
    dumps = seeds.netlink_dumps()
    one = st.one_of(
        mutated(datagrams, fields=netlink_length_fields, orders=("little",)),
        mutated(datagrams, fields=netlink_length_fields, orders=("little",)),
        mutated(datagrams, fields=netlink_length_fields, orders=("little",), max_ops=8),
        st.sampled_from(datagrams),
        st.binary(max_size=96),
    )
    return Target(
        name="netlink",
        doc="netlink decoders and FibState.apply_datagram / take_delta / resync on kernel datagrams",
        strategy=st.tuples(st.sampled_from([-1, -1, -1, *range(len(dumps))]), st.lists(one, min_size=1, max_size=4)),
        check=check_netlink,
        seeds=lambda: [(-1, list(dump)) for dump in dumps] + [(0, step) for step in seeds.netlink_event_steps()],
        dump=lambda v: packed([v[0], v[1]]),
        load=lambda b: (unpacked(b)[0], list(unpacked(b)[1])),
        show=lambda v: f"base dump {v[0]}, datagrams " + repr([d.hex() for d in v[1]]),
    )


# -- frames ------------------------------------------------------------------------------------

KINDS = {"arp", "nd", "icmp", "icmpv6", "ospf", "tcp", "udp", "ip", "mapping", "lldp", "other"}


def check_frames(value: tuple[Any, ...]) -> None:
    kind = value[0]
    if kind == 0:
        data = value[1]
        probe = _stage("lldp.parse_probe", lambda: lldp.parse_probe(data))
        assert probe is None or (isinstance(probe, tuple) and len(probe) == 2 and 0 <= probe[0] < 1 << 64
                                 and probe[1] >= 0), probe
        try:
            packet = _stage("mapping.decode", lambda: mapping.decode(data))
            assert isinstance(packet, mapping.MappingPacket) and packet.vm and packet.ifname, packet
        except mapping.MappingPacketError:
            pass
        assert _stage("traffic_kind", lambda: traffic_kind(data)) in KINDS
    elif kind == 1:
        _, dpid, port, mac = value
        data = lldp.build_probe(dpid, port, mac)
        assert lldp.parse_probe(data) == (dpid, port), data.hex()
        assert traffic_kind(data) == "lldp"
    else:
        _, vm, ifname, mac = value
        data = mapping.encode(vm, ifname, mac)
        assert mapping.decode(data) == (vm, ifname), data.hex()
        assert traffic_kind(data) == "mapping"


_NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(lambda s: len(s.encode()) < 256)


def frames() -> Target:
    frame_seeds = seeds.frames()
    tokens = [struct.pack("!H", t) for t in (0x88CC, 0x0A0A, 0x8100, 0x0800, 0x86DD, 0x0806)] + [b"RFMP\x01",
                                                                                               b"dpid:"]
    mac = st.sampled_from(MACS)
    return Target(
        name="frames",
        doc="lldp.parse_probe, mapping.decode and classify.traffic_kind on packet-in frames; encoders round-trip",
        strategy=st.one_of(
            mutated(frame_seeds, orders=("big",), tokens=tokens).map(lambda b: (0, b)),
            mutated(frame_seeds, orders=("big",), tokens=tokens).map(lambda b: (0, b)),
            st.binary(max_size=80).map(lambda b: (0, b)),
            st.tuples(st.just(1), st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 32) - 1), mac),
            st.tuples(st.just(2), _NAME, _NAME, mac),
        ),
        check=check_frames,
        seeds=lambda: [(0, f) for f in frame_seeds] + [(1, 1, 3, MACS[0]), (2, "rA", "eth1", MACS[0])],
        dump=lambda v: packed(list(v)),
        load=lambda b: tuple(unpacked(b)),
        show=lambda v: f"(0, {show_bytes(v[1])})" if v[0] == 0 else repr(v),
    )


# -- config, topology --------------------------------------------------------------------------

SOURCE = "<fuzz>"
#: YAML that breaks things: names and targets for commands, YAML 1.1 oddities, tags, aliases, depth.
YAML_TOKENS = [b":", b": ", b"- ", b"[", b"]", b"{", b"}", b",", b"? ", b"|", b">", b"'", b'"', b"#", b"\t", b"\n",
               b"  ", b"&x ", b"*x", b"!", b"%", b"---\n", b"...\n", b"\\", b"\r", b"-eth1", b"--help", b"eth1/0",
               b"0b" + b"1" * 70, b"1" * 5000, b".nan", b"-.inf", b"~", b"[]", b"{}", b"<<", b"yes", b"!!int zz",
               b"!!binary aGk=", b"!!python/object/apply:os.system [true]", b"!!str 7", b"!!set {a}", b"&a 1",
               b"[*a, *a]", b'"\\x00"', b"[" * 70, b"0x7266", b"10:01", b"1_000", b"\xc3\x28", b"\xef\xbb\xbf"]
DOMAIN_VALUES = ["eth1", "rA", "frr", "bird", "none", "ospfd", "virtual", "physical", "0x1", "tcp:127.0.0.1:6653",
                 "unix:/run/routeflow/x.sock", "tcp:10.0.0.1:6653", "172.31.1.1/24", "2001:db8::1/64", "10.0.0.1",
                 "02:52:46:01:00:01", "sA:1", "h1", "", " ", "-x", "a" * 70, "eth1.100", "lo", "rfvs"]


def _document_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.sampled_from(DOMAIN_VALUES), st.none(), st.booleans(), any_int, st.floats(),
                        st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(["name", "dpid", "port", "addresses", "interfaces", "vms",
                                                   "links", "ends", "switches", "hosts", "routers", "trunk"]),
                                  st.text(max_size=10), any_int), inner, max_size=4)), max_leaves=10)


def _slots(doc: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((doc, key))
            _slots(value, out)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.append((doc, i))
            _slots(value, out)
    return out


@st.composite
def _mutated_document(draw: Any, documents: list[Any]) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(documents)))
    values = _document_values()
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(st.integers(0, 3))
        if op == 0:
            container[key] = draw(values)
        elif op == 1:
            del container[key]
        elif op == 2 and isinstance(container, list):
            container.insert(key, copy.deepcopy(container[key]) if draw(st.booleans()) else draw(values))
        elif op == 2:
            container[draw(st.one_of(st.sampled_from(["name", "mac", "trunk", "extra"]), st.text(max_size=8)))] = \
                draw(values)
        else:
            container[key] = draw(st.sampled_from(DOMAIN_VALUES))
    return doc


class _Scratch:
    """One temporary file per process for the loaders that read a path."""

    path: Path | None = None

    @classmethod
    def write(cls, data: bytes) -> Path:
        if cls.path is None:
            folder = Path(tempfile.mkdtemp(prefix="routeflow-fuzz-"))
            atexit.register(shutil.rmtree, folder, True)
            cls.path = folder / "input.yaml"
        cls.path.write_bytes(data)
        return cls.path


def _check_loader(value: tuple[int, Any], parse: Callable[..., Any], load: Callable[[Path], Any]) -> None:
    mode, payload = value
    source = SOURCE
    try:
        if mode == 0:
            parse(payload, SOURCE)
        elif mode == 1:
            document = parse_yaml(payload, SOURCE)
            parse(document.value, SOURCE, document.problems)
        else:
            path = _Scratch.write(payload)
            source = str(path)
            load(path)
    except ConfigError as exc:
        assert exc.file == source and exc.problems, exc
        for line in str(exc).splitlines():
            assert line.startswith(f"{source}: ") and len(line) < len(source) + 400, line


def _loader_strategy(files: list[bytes]) -> st.SearchStrategy[tuple[int, Any]]:
    documents = [yaml.safe_load(f) for f in files]
    text = mutated(files, orders=("big",), tokens=YAML_TOKENS)
    return st.one_of(
        _mutated_document(documents).map(lambda d: (0, d)),
        _document_values().map(lambda d: (0, d)),
        text.map(lambda b: (1, b.decode("utf-8", "replace"))),
        text.map(lambda b: (1, b.decode("utf-8", "replace"))),
        st.text(max_size=80).map(lambda t: (1, t)),
        text.map(lambda b: (2, b)),
    )


def _loader_target(name: str, files: Callable[[], list[bytes]], parse: Callable[..., Any],
                   load: Callable[[Path], Any], doc: str) -> Target:
    return Target(
        name=name,
        doc=doc,
        strategy=_loader_strategy(files()),
        check=lambda value: _check_loader(value, parse, load),
        seeds=lambda: [(m, f if m == 2 else f.decode() if m == 1 else yaml.safe_load(f))
                       for f in files() for m in (0, 1, 2)],
        dump=lambda v: packed([v[0], v[1]]),
        load=lambda b: (unpacked(b)[0], unpacked(b)[1]),
        show=lambda v: ["document", "YAML text", "file bytes"][v[0]] + ": " + repr(v[1]),
    )


def config() -> Target:
    return _loader_target("config", seeds.config_files, parse_config, load_config,
                          "parse_config / parse_yaml / load_config on documents, text and files")


def topology() -> Target:
    return _loader_target("topology", seeds.topology_files, parse_topology, load_topology,
                          "parse_topology / parse_yaml / load_topology on documents, text and files")


#: Every target, by name, in the order the runner runs them.
TARGETS: dict[str, Callable[[], Target]] = {
    "rf_protocol": rf_protocol,
    "server_core": server_core,
    "openflow_replies": openflow_replies,
    "openflow_messages": openflow_messages,
    "netlink": netlink,
    "frames": frames,
    "config": config,
    "topology": topology,
}


@functools.cache
def target(name: str) -> Target:
    return TARGETS[name]()
