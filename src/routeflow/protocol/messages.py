"""RF-protocol messages: commands and events between the RF-Server and its peers.

Every peer opens with :class:`Hello`; the server answers :class:`Welcome` or
:class:`Goodbye`. After that each role may send only the messages listed for it
in :data:`ACCEPTED` (what the server accepts) and the server sends back the
ones listed in the role's docstring. Anything else closes the connection.

Roles:

* ``controller`` -- the RF-Controller (os-ken application): one active at a time, any
  others (``name`` tells them apart) standing by, each told its part by :class:`Welcome`
  and :class:`ControllerRole`.
* ``client`` -- an RF-Client inside a virtual router; ``name`` is the VM name.
* ``operator`` -- the ``routeflow`` CLI asking for status or a verify run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from routeflow.model import (
    Fib,
    Flow,
    FlowKey,
    Group,
    IfName,
    Interface,
    IpAddress,
    IpWithLength,
    Neighbour,
    PortDesc,
    Route,
)

#: Bumped on any incompatible change to the message set.
PROTOCOL_VERSION = 2

Role = Literal["controller", "client", "operator"]


class Message(msgspec.Struct, tag_field="type", frozen=True):
    """Base of every RF-protocol message; the class name is the wire tag."""


# -- session ---------------------------------------------------------------------


#: A challenge or a proof (:mod:`routeflow.protocol.auth`): hex.
_Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32,64}$")]


class Hello(Message, tag="hello", frozen=True):
    """First message of every peer: who it says it is, which protocol it speaks,
    and the challenge the server must answer to prove it holds the peer's key."""

    version: int
    role: Role
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    nonce: _Hex


class Challenge(Message, tag="challenge", frozen=True):
    """The server's answer to a hello: its proof over the peer's nonce, and a nonce
    of its own for the peer to prove itself over."""

    nonce: _Hex
    proof: _Hex


class Proof(Message, tag="proof", frozen=True):
    """The peer's proof over the server's nonce; a :class:`Welcome` follows if it holds."""

    proof: _Hex


class Welcome(Message, tag="welcome", frozen=True):
    """The server accepts the peer. ``rfvs`` lists the datapath ids of the RFVS bridges.

    To a controller, also its part (as :class:`ControllerRole` says it later): active or
    standing by, in election ``term``; term 0, from a server that holds no elections, asks
    for no OpenFlow role (the switches keep their default, equal)."""

    version: int
    rfvs: tuple[int, ...] = ()
    controller_active: bool = True
    term: Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)] = 0


class Ping(Message, tag="ping", frozen=True):
    """The server asks a quiet peer whether it is still there (every few seconds)."""

    seq: Annotated[int, msgspec.Meta(ge=0)]


class Pong(Message, tag="pong", frozen=True):
    """A peer's answer to :class:`Ping`, with its ``seq``; the sessions of
    :mod:`routeflow.protocol.transport` send it by themselves."""

    seq: Annotated[int, msgspec.Meta(ge=0)]


class Goodbye(Message, tag="goodbye", frozen=True):
    """Either side closes the session and says why."""

    reason: str


# -- controller -> server --------------------------------------------------------


class DatapathJoin(Message, tag="datapath_join", frozen=True):
    """A datapath connected (or is re-reported after a controller restart)."""

    dpid: int
    ports: tuple[PortDesc, ...]


class DatapathLeave(Message, tag="datapath_leave", frozen=True):
    dpid: int


class PortChange(Message, tag="port_change", frozen=True):
    """A port was added, modified (link or admin state) or deleted."""

    dpid: int
    port: PortDesc
    deleted: bool = False


class MappingSeen(Message, tag="mapping_seen", frozen=True):
    """A port-identification packet from VM ``vm`` interface ``ifname`` entered RFVS port."""

    rfvs_dpid: int
    rfvs_port: int
    vm: str
    ifname: IfName


class TableDump(Message, tag="table_dump", frozen=True):
    """Reply to :class:`DumpTable`: the flows and groups the switch holds.

    A large table comes in parts of the same ``request_id``: every part but
    the last has ``more`` set, so neither side holds it twice as one message.
    """

    request_id: int
    dpid: int
    flows: tuple[Flow, ...]
    groups: tuple[Group, ...]
    error: str = ""
    more: bool = False


class SwitchError(Message, tag="switch_error", frozen=True):
    """The switch refused a message; the server re-reads that datapath's table."""

    dpid: int
    text: str


class LinkChange(Message, tag="link_change", frozen=True):
    """Discovery found (``up``) or lost a physical link: probes leaving ``src_port``
    of ``src_dpid`` arrive at ``dst_port`` of ``dst_dpid``."""

    src_dpid: int
    src_port: int
    dst_dpid: int
    dst_port: int
    up: bool


class ControllerStats(Message, tag="controller_stats", frozen=True):
    """Reply to :class:`StatsRequest`: slow-path counters by datapath id."""

    request_id: int
    packet_in: dict[int, int]
    packet_out: dict[int, int]
    #: Packet-ins by traffic kind (``arp``, ``ospf``, ``icmp``...) per datapath.
    packet_in_by_kind: dict[int, dict[str, int]] = {}
    #: Packet-ins that could not be relayed (no mapping, truncated, malformed).
    dropped: dict[int, int] = {}
    #: Connections refused for claiming a datapath id whose connection was alive.
    refused: dict[int, int] = {}
    #: The OpenFlow role each switch last gave the controller (``master``, ``slave``, ``equal``).
    roles: dict[int, str] = {}


# -- server -> controller --------------------------------------------------------


class RelayEntry(msgspec.Struct, frozen=True, order=True, array_like=True):
    """Slow-path pairing of a virtual port (a switch port, or a VLAN on one) with the
    RFVS port of its VM NIC."""

    dpid: int
    port: int
    rfvs_dpid: int
    rfvs_port: int
    #: The 802.1Q VLAN id of the virtual port, 0 if untagged: its frames lose the tag on
    #: their way to the VM NIC and get it back on their way out.
    vlan: Annotated[int, msgspec.Meta(ge=0, le=4094)] = 0


class RelayMap(Message, tag="relay_map", frozen=True):
    """The complete slow-path relay table (replaces the previous one)."""

    entries: tuple[RelayEntry, ...]


class DiscoveryPlan(Message, tag="discovery_plan", frozen=True):
    """Probe every port of ``dpids`` for physical links each ``interval`` seconds
    (replaces the previous plan; no datapaths: no discovery)."""

    dpids: tuple[int, ...]
    #: Positive: a zero interval would have the controller probe without pause.
    interval: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class TableMod(Message, tag="table_mod", frozen=True):
    """Changes to one datapath, applied in a safe order by the controller:
    groups added and modified, flows added, modified and deleted, then groups deleted."""

    dpid: int
    add: tuple[Flow, ...] = ()
    modify: tuple[Flow, ...] = ()
    delete: tuple[FlowKey, ...] = ()
    group_add: tuple[Group, ...] = ()
    group_modify: tuple[Group, ...] = ()
    group_delete: tuple[int, ...] = ()


class DumpTable(Message, tag="dump_table", frozen=True):
    request_id: int
    dpid: int


class StatsRequest(Message, tag="stats_request", frozen=True):
    request_id: int


class ControllerRole(Message, tag="controller_role", frozen=True):
    """The server elected a controller: this one is now ``active`` (OpenFlow master of
    every switch, with ``term`` as its generation id) or stands by (slave). Terms only
    grow, across the server's restarts too, so a switch refuses a deposed master's."""

    active: bool
    term: Annotated[int, msgspec.Meta(gt=0, le=(1 << 63) - 1)]


class Admission(Message, tag="admission", frozen=True):
    """The server's decision on a switch that no configured VM mirrors (the paper's accept and
    reject): admitted, VM ``vm``, made from ``template``, mirrors it; rejected for ``reason``,
    it holds nothing but the table-miss drop, and its packet-ins are dropped."""

    dpid: int
    admitted: bool
    vm: Annotated[str, msgspec.Meta(max_length=64)] = ""
    template: Annotated[str, msgspec.Meta(max_length=64)] = ""
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


#: What the server sends the controller after the handshake (a :class:`Ping` is answered
#: by the session and never handed on).
ToController = RelayMap | DiscoveryPlan | TableMod | DumpTable | StatsRequest | ControllerRole | Admission | Goodbye


# -- client -> server ------------------------------------------------------------


class FibSnapshot(Message, tag="fib_snapshot", frozen=True):
    """The complete state of a VM; replaces what the server held for it.

    Sent at start, after a Netlink overflow, and with the ``request_id`` of a
    :class:`SnapshotRequest` in reply to one (``0`` when unsolicited). A reply
    comes in parts of the same ``request_id`` (:func:`snapshot_parts`): every
    part but the last has ``more`` set, so neither side encodes or decodes a
    large FIB as one message.
    """

    fib: Fib
    request_id: int = 0
    more: bool = False


#: Routes per part of a snapshot reply.
SNAPSHOT_PART = 10_000

T = TypeVar("T")


def parts(items: Sequence[T], limit: int) -> Iterator[tuple[Sequence[T], bool]]:
    """``items`` in slices of at most ``limit``, each with whether more follow: the
    parts of a reply (:class:`TableDump`, :class:`FibSnapshot`); one empty slice if none."""
    last = max(len(items) - 1, 0) // limit
    for part in range(last + 1):
        yield items[part * limit : (part + 1) * limit], part < last


def snapshot_parts(fib: Fib, request_id: int, limit: int = SNAPSHOT_PART) -> Iterator[FibSnapshot]:
    """``fib`` as the parts of a reply to :class:`SnapshotRequest` ``request_id``:
    interfaces and neighbours in the first, at most ``limit`` routes in each."""
    for i, (chunk, more) in enumerate(parts(fib.routes, limit)):
        routes = tuple(chunk)
        first = Fib(fib.interfaces, routes, fib.neighbours) if i == 0 else Fib(routes=routes)
        yield FibSnapshot(first, request_id, more=more)


class FibDelta(Message, tag="fib_delta", frozen=True):
    """Incremental changes since the last snapshot or delta."""

    interfaces_set: tuple[Interface, ...] = ()
    interfaces_del: tuple[IfName, ...] = ()
    routes_set: tuple[Route, ...] = ()
    routes_del: tuple[IpWithLength, ...] = ()
    neighbours_set: tuple[Neighbour, ...] = ()
    #: ``(ifname, ip)`` pairs.
    neighbours_del: tuple[tuple[IfName, IpAddress], ...] = ()


class FibAudit(Message, tag="fib_audit", frozen=True):
    """The RF-Client compared its FIB with a fresh read of the kernel: how many
    audits so far, how many routes they found changed without an event (and
    repaired with a delta sent before this), and when the last such repair was."""

    audits: Annotated[int, msgspec.Meta(ge=0)]
    repaired: Annotated[int, msgspec.Meta(ge=0)]
    #: UTC time of the last repair (ISO 8601), empty if none.
    last_repair: Annotated[str, msgspec.Meta(max_length=32)] = ""
    #: How long the audit took.
    seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.0


def delta_parts(delta: FibDelta, limit: int = SNAPSHOT_PART) -> Iterator[FibDelta]:
    """``delta`` as deltas of at most ``limit`` routes or neighbours each, to be sent in
    order: a link renamed or flushed at a million routes changes them all at once, and
    no frame may be that large. Interfaces go with the first."""
    fields = ("routes_set", "routes_del", "neighbours_set", "neighbours_del")
    if sum(len(getattr(delta, name)) for name in fields) <= limit:
        yield delta
        return
    head = FibDelta(interfaces_set=delta.interfaces_set, interfaces_del=delta.interfaces_del)
    for name in fields:
        for chunk, _ in parts(getattr(delta, name), limit):
            if chunk:
                yield msgspec.structs.replace(head, **{name: tuple(chunk)})
                head = FibDelta()


# -- server -> client ------------------------------------------------------------


class PortMapped(Message, tag="port_mapped", frozen=True):
    """The server knows where interface ``ifname`` is: stop sending mapping packets."""

    ifname: str
    dpid: int
    port: int


class LinkState(Message, tag="link_state", frozen=True):
    """Set the VM interface mirroring a switch port up or down."""

    ifname: str
    up: bool


class ResolveNextHops(Message, tag="resolve_next_hops", frozen=True):
    """Next hops of the VM's routes with no neighbour entry: make the kernel try
    to resolve each ``(ifname, gateway)`` again (ARP or ND)."""

    hops: tuple[tuple[str, str], ...]


class SnapshotRequest(Message, tag="snapshot_request", frozen=True):
    request_id: int


# -- operator <-> server ---------------------------------------------------------


class StatusRequest(Message, tag="status_request", frozen=True):
    request_id: int
    #: Include every route, neighbour, flow and group, not only their counts.
    detail: bool = True


class StatusReply(Message, tag="status_reply", frozen=True):
    request_id: int
    #: JSON-ready status document (see ``routeflow.server.status``).
    status: dict[str, Any]


class VerifyRequest(Message, tag="verify_request", frozen=True):
    request_id: int


class VerifyReply(Message, tag="verify_reply", frozen=True):
    request_id: int
    ok: bool
    differences: tuple[str, ...]
    checked: dict[str, int] = {}


class ReloadRequest(Message, tag="reload_request", frozen=True):
    """Read the server's config file again and apply what differs (``routeflow reload``)."""

    request_id: int


class ReloadReply(Message, tag="reload_reply", frozen=True):
    request_id: int
    #: False: the config was refused whole (``problems``) and nothing changed.
    ok: bool
    #: Each problem as ``file: field: reason``.
    problems: tuple[str, ...] = ()
    #: What changed, one line each (empty: the file says what runs).
    changes: tuple[str, ...] = ()
    #: FlowMods (flow and group changes) the reload sent, by datapath (``0x...``), counted
    #: until the VMs it changed have reported their new state.
    flow_mods: dict[str, int] = {}
    #: Flows and groups the datapaths it touched hold (what a flush would have rewritten).
    table_size: int = 0


AnyMessage = (
    Hello
    | Challenge
    | Proof
    | Welcome
    | Ping
    | Pong
    | Goodbye
    | DatapathJoin
    | DatapathLeave
    | PortChange
    | MappingSeen
    | LinkChange
    | TableDump
    | SwitchError
    | ControllerStats
    | RelayMap
    | DiscoveryPlan
    | TableMod
    | DumpTable
    | StatsRequest
    | ControllerRole
    | Admission
    | FibSnapshot
    | FibDelta
    | FibAudit
    | PortMapped
    | LinkState
    | ResolveNextHops
    | SnapshotRequest
    | StatusRequest
    | StatusReply
    | VerifyRequest
    | VerifyReply
    | ReloadRequest
    | ReloadReply
)

# -- what each role may send -----------------------------------------------------

#: Messages of the session itself, which any role may send after its handshake: the
#: connection handles them (a pong is only heard; a goodbye closes it).
SESSION: tuple[type[Message], ...] = (Pong, Goodbye)

#: What each role may send after its handshake besides :data:`SESSION`: the messages the
#: server's dispatch table (:mod:`routeflow.server.service`) has a handler for, role by role.
SENT_BY: dict[str, tuple[type[Message], ...]] = {
    "controller": (
        DatapathJoin,
        DatapathLeave,
        PortChange,
        MappingSeen,
        LinkChange,
        TableDump,
        SwitchError,
        ControllerStats,
    ),
    "client": (FibSnapshot, FibDelta, FibAudit),
    "operator": (StatusRequest, VerifyRequest, ReloadRequest),
}

#: What the server accepts from each role after the handshake.
ACCEPTED: dict[str, tuple[type[Message], ...]] = {role: SESSION + sent for role, sent in SENT_BY.items()}
