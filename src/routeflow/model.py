"""Core value types of routeflow, shared by every component.

They are immutable msgspec structs, so the same objects travel in RF-protocol
messages, live in the server's NIB and feed the pure flow compiler.

Addresses are kept as canonical strings (``ipaddress`` normal form): they are
hashable, cheap to encode and compare equal exactly when the addresses do.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

#: Route types the FIB can hold that matter to forwarding (rtnetlink RTN_*).
RouteType = Literal["unicast", "blackhole", "unreachable", "prohibit"]

# -- the grammar of values a peer sends ------------------------------------------------
# Checked by msgspec as a message is decoded (never on construction, so they cost
# nothing inside a process): a value that breaks them closes the peer that sent it
# before it reaches the server's core. Addresses are canonical ``ipaddress`` text.

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = r"[0-9a-f]{1,4}"
_IPV6 = (
    rf"(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:|(?:{_H}:){{1,6}}:{_H}|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}"
    rf"|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}"
    rf"|{_H}:(?::{_H}){{1,6}}|:(?:(?::{_H}){{1,7}}|:)|::ffff(?::0{{1,4}})?:{_IPV4}|(?:{_H}:){{1,4}}:{_IPV4})"
)
_IP = rf"(?:{_IPV4}|{_IPV6})"
_WITH_LENGTH = rf"(?:{_IPV4}/(?:3[0-2]|[12]?[0-9])|{_IPV6}/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))"

#: An IPv4 or IPv6 address: ``"10.0.0.1"``, ``"fe80::1"``.
IpAddress = Annotated[str, msgspec.Meta(pattern=rf"^{_IP}$")]
#: An address or prefix with its length: ``"10.0.0.0/24"``, ``"172.31.1.1/24"``.
IpWithLength = Annotated[str, msgspec.Meta(pattern=rf"^{_WITH_LENGTH}$")]
#: A Linux interface name: 1 to 15 characters, no blank, ``/`` or ``:``, not ``.``,
#: ``..`` or option-like.
IfName = Annotated[str, msgspec.Meta(pattern=r"^(?![.]{1,2}$|-)[^\x00-\x20/:\x7f]{1,15}$")]
#: An Ethernet address in lower case: ``"02:52:46:01:00:03"``.
MAC_PATTERN = r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}"
Mac = Annotated[str, msgspec.Meta(pattern=f"^{MAC_PATTERN}$")]
#: An interface's Ethernet address, or "" for a link that has none (a tunnel: ipip, GRE,
#: WireGuard, tun): such a link still has addresses the router owns.
LinkMac = Annotated[str, msgspec.Meta(pattern=f"^(?:{MAC_PATTERN})?$")]
#: Routing protocol names as the client reports them (``ospf``, ``bgp``, ``186``).
ProtoName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{0,16}$")]


class Interface(msgspec.Struct, frozen=True, order=True):
    """A network interface of a virtual router (VM NIC or loopback).

    ``addresses`` are every address the router owns on the interface, IPv4
    first, each family in numeric order, as canonical ``ipaddress`` text with
    the prefix length: ``("172.31.1.1/24", "2001:db8:1::1/64",
    "fe80::a8c1:abff:fe01:203/64")``. IPv6 link-local addresses are included,
    in the same form and without a zone (the interface is the zone): the
    router answers neighbour discovery and ICMPv6 for them, and routing
    protocols (OSPFv3, BGP over link-local) use them as next hops, so the
    flow compiler needs them; ``ipaddress.ip_interface(a).is_link_local``
    tells them apart. Addresses still in duplicate address detection are
    left out until it completes.
    """

    ifname: IfName
    mac: LinkMac
    up: bool
    #: Addresses with prefix length, e.g. ``"172.31.1.1/24"``, ``"fe80::1/64"``.
    addresses: Annotated[tuple[IpWithLength, ...], msgspec.Meta(max_length=4096)] = ()


class NextHop(msgspec.Struct, frozen=True, order=True):
    """One next hop of a route: an interface and, unless connected, a gateway.

    An IPv6 gateway is often link-local (``fe80::1``): it is only meaningful
    on ``ifname``, and its neighbour entry is keyed ``(ifname, "fe80::1")``."""

    ifname: IfName
    gateway: IpAddress | None = None


class Route(msgspec.Struct, frozen=True, order=True):
    """A FIB entry of a virtual router: the best route to one prefix."""

    prefix: IpWithLength
    #: At most 1024: the kernel's limit on multipath legs is far lower.
    nexthops: Annotated[tuple[NextHop, ...], msgspec.Meta(max_length=1024)] = ()
    type: RouteType = "unicast"
    #: The routing protocol that installed it (``ospf``, ``bgp``, ``kernel``...).
    proto: ProtoName = ""


class Neighbour(msgspec.Struct, frozen=True, order=True):
    """A resolved neighbour (ARP/ND entry): IP address to MAC on one interface."""

    ifname: IfName
    ip: IpAddress
    mac: Mac


class Fib(msgspec.Struct, frozen=True):
    """Everything a virtual router tells the server: its interfaces, FIB and neighbours."""

    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()


class PortDesc(msgspec.Struct, frozen=True, order=True):
    """A port of an OpenFlow datapath as the switch describes it."""

    port_no: int
    name: str
    mac: str
    #: Link up and not administratively down.
    up: bool


# -- flow and group entries -------------------------------------------------------------
# Switch-neutral flow and group entries: what the compiler produces and the
# controller encodes into OpenFlow 1.3.
#
# Everything is a hashable tuple so that desired and installed tables compare
# with plain set and dict operations.
#
# Match fields use OpenFlow OXM names (``in_port``, ``eth_type``, ``eth_dst``,
# ``ip_proto``, ``ipv4_dst``...). A masked IP field is written as a prefix,
# ``"10.0.0.0/24"``; an exact one has no ``/``.
#
# Actions are tuples whose first element names the action:
#
# ``("output", port)``, ``("controller",)``, ``("group", group_id)``,
# ``("dec_nw_ttl",)``, ``("set_field", field, value)``, ``("push_vlan", ethertype)``,
# ``("pop_vlan",)``.

Match = tuple[tuple[str, str | int], ...]
Action = tuple[str | int, ...]

CONTROLLER: Action = ("controller",)
DEC_TTL: Action = ("dec_nw_ttl",)
POP_VLAN: Action = ("pop_vlan",)
#: 802.1Q: the tag the data-plane slow path carries the switch port in.
PUSH_VLAN: Action = ("push_vlan", 0x8100)
#: OFPVID_PRESENT: a ``vlan_vid`` value (match or set_field) with this bit names a tagged frame.
VID_PRESENT = 0x1000


def output(port: int) -> Action:
    return ("output", port)


def set_field(field: str, value: str | int) -> Action:
    return ("set_field", field, value)


def group(group_id: int) -> Action:
    return ("group", group_id)


def match(**fields: str | int) -> Match:
    """A canonical match: fields sorted by name so equal matches are equal tuples."""
    return tuple(sorted(fields.items()))


class FlowKey(msgspec.Struct, frozen=True, order=True, array_like=True):
    """What identifies a flow entry in a switch: table, priority and match."""

    table: int
    priority: int
    match: Match


class Flow(msgspec.Struct, frozen=True, order=True, array_like=True):
    """A flow entry: apply ``actions``, then continue in table ``goto`` if set.

    A flow with no actions and no ``goto`` drops the packet.
    """

    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...] = ()
    goto: int | None = None

    @property
    def key(self) -> FlowKey:
        return FlowKey(self.table, self.priority, self.match)


class Group(msgspec.Struct, frozen=True, order=True, array_like=True):
    """An OpenFlow group; ``buckets`` are action lists (equal weights)."""

    group_id: int
    type: str
    buckets: tuple[tuple[Action, ...], ...]


class Table(msgspec.Struct, frozen=True):
    """The complete flow state of one datapath: flows by key and groups by id."""

    flows: dict[FlowKey, Flow] = {}
    groups: dict[int, Group] = {}


def format_action(action: Action) -> str:
    """``ovs-ofctl``-like text of one action, for status and verify output."""
    name = action[0]
    if name == "set_field":
        return f"set_field:{action[2]}->{action[1]}"
    if len(action) == 1:
        return str(name)
    return f"{name}:{action[1]}"


def format_flow(flow: Flow) -> str:
    """``ovs-ofctl``-like one-line text of a flow."""
    fields = ",".join(f"{k}={v}" for k, v in flow.match) or "any"
    acts = [format_action(a) for a in flow.actions]
    if flow.goto is not None:
        acts.append(f"goto_table:{flow.goto}")
    return f"table={flow.table},priority={flow.priority},{fields} actions={','.join(acts) or 'drop'}"


def format_group(grp: Group) -> str:
    buckets = ",".join(
        "bucket=" + ",".join(format_action(a) for a in bucket) for bucket in grp.buckets
    )
    return f"group_id={grp.group_id},type={grp.type},{buckets}"
