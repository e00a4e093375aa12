"""Target ``server_core``: event sequences (peers connecting and leaving, every message a
controller or a client may send, as msgpack through the codec, reconciles, resolution ticks,
status) -> ``ServerCore``: no exception ever (the core documents none), every datapath's table
computable, every command it emits encodable and accepted by its peer's decoder.

Also the hints of values of the model's types (FIBs, tables) that the ``rf_protocol`` target
draws its messages with: mostly what the seeds, the configs and the core's own flows hold."""

from __future__ import annotations

import functools
import typing
from typing import Any

import msgspec
from hypothesis import strategies as st

from fuzz import seeds
from fuzz.engine import Target
from fuzz.strategies import for_type, loose_messages, messages_of
from fuzz.targets.common import FIELD_HINTS, IP_ADDRESSES, MACS, PATTERN_HINTS, frame, packed, pattern, stage, unpacked
from routeflow import model
from routeflow.config.loader import parse_config
from routeflow.config.schema import Config
from routeflow.model import Flow
from routeflow.protocol import codec
from routeflow.protocol.messages import (
    ACCEPTED,
    DatapathJoin,
    DatapathLeave,
    FibAudit,
    FibDelta,
    FibSnapshot,
    Goodbye,
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


def decode_frame(body: bytes) -> Message | None:
    """The message a peer's connection makes of one frame, or None if it closes the peer."""
    try:
        (msg,) = codec.Connection().receive_data(frame(body))
    except codec.RemoteProtocolError:
        return None
    return msg


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


def model_hints() -> dict[str, st.SearchStrategy[Any]]:
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
            "FibDelta.routes_del": _pooled([r.prefix for r in routes], PATTERN_HINTS[pattern(model.IpWithLength)], 3),
            "Fib.neighbours": _pooled(neighbours, generic["n"], 3),
            "FibDelta.neighbours_set": _pooled(neighbours, generic["n"], 3),
            "FibDelta.neighbours_del": _pooled([(n.ifname, n.ip) for n in neighbours],
                                               st.tuples(PATTERN_HINTS[pattern(model.IfName)], IP_ADDRESSES), 3),
            "TableDump.flows": _pooled(flows, generic_flow, 8),
            "Flow.match": st.one_of(st.sampled_from([f.match for f in flows]),
                                    for_type(typing.cast(msgspec.inspect.StructType, info(Flow)).fields[2].type))}


def _core_events() -> st.SearchStrategy[tuple[int, list[tuple[Any, ...]]]]:
    hints = model_hints()
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
            data = stage(f"codec.encode of {type(item.msg).__name__} from {where}", lambda: codec.encode(item.msg))
            back = decode_frame(data[4:])
            assert back is not None, f"{where} emitted {item.msg!r}, which its peer's decoder refuses"

    def call(self, name: str, *args: Any) -> None:
        self.emit(name, stage(f"ServerCore.{name}", lambda: getattr(self.core, name)(*args)))

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
        document = stage("status_document", lambda: status_document(self.core.nib, detail=detail))
        stage("StatusReply encoding", lambda: codec.encode(StatusReply(1, document)))

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
