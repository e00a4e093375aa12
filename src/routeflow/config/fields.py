"""Strict reading of YAML documents into typed values, collecting every error.

Both the routeflow config and lab topology files are read with
:class:`Fields`: each accessor checks one key, records a ``(field path,
reason)`` problem instead of raising, and :meth:`Fields.finish` reports keys
nobody asked for. The loader raises one :class:`~routeflow.errors.ConfigError`
listing everything wrong with the file. Files are read by
:func:`routeflow.config.safe_yaml.read_yaml`.

Every string handed to a command (``ip``, ``ovs-vsctl``) is checked against its
grammar here, at load time: names of what routeflow creates (:meth:`Fields.name`),
names of existing interfaces (:meth:`Fields.ifname`) and Open vSwitch controller
targets (:meth:`Fields.controller`). Values shown in messages are bounded
(:func:`~routeflow.config.safe_yaml.shown`).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Sequence
from typing import Any, Iterator

from routeflow.config.safe_yaml import join_path, shown
from routeflow.errors import ConfigError

_MISSING = object()
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # fullmatch: "$" would let a final newline through
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
#: Longest Linux interface name: IFNAMSIZ (16) less the terminating NUL (as routeflow.vnet.links.IFNAME_MAX).
IFNAME_MAX = 15
#: Longest ``unix:`` socket path: sun_path holds 108 bytes with the NUL.
UNIX_PATH_MAX = 107
_UNIX_PATH = re.compile(r"[A-Za-z0-9._/@+~-]+")
#: Most problems listed for one file (a hostile file can hold hundreds of thousands).
MAX_PROBLEMS = 1000
#: The controller targets Open vSwitch accepts, as messages name them (see controller_problem).
#: Controller targets one switch may be given: an active/standby pair, and room for more.
MAX_CONTROLLERS = 4
CONTROLLER_FORMS = ("tcp:IP[:PORT], ssl:IP[:PORT], unix:PATH, ptcp:[PORT][:IP], pssl:[PORT][:IP] or punix:PATH, "
                    "IPv6 in brackets")


class Problems:
    """The problems found in one file.

    ``reading`` are those found reading it (see :class:`~routeflow.config.safe_yaml.YamlDocument`):
    their values are null in the document, so what validating would add at their fields, or
    inside them, is left out: it would only repeat them. The first :data:`MAX_PROBLEMS` are
    listed, then how many more there are.
    """

    def __init__(self, file: str, reading: Sequence[tuple[str, str]] = ()) -> None:
        self.file = file
        self.items: list[tuple[str, str]] = []
        #: Problems found beyond MAX_PROBLEMS.
        self.untold = 0
        for field, reason in reading:
            self._append(field, reason)
        self._read = {field for field, _ in reading}

    def add(self, field: str, reason: str) -> None:
        if not (self._read and self._covered(field)):
            self._append(field, reason)

    def _append(self, field: str, reason: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append((field, reason))
        else:
            self.untold += 1

    def _covered(self, field: str) -> bool:
        """Whether ``field`` is, or is inside, a field that had a problem reading it."""
        if "(top)" in self._read or field in self._read:
            return True
        return any(field[:i] in self._read for i, c in enumerate(field) if c in ".[")

    def raise_if_any(self) -> None:
        if self.items:
            more = [("(file)", f"{self.untold} more problems (only the first {MAX_PROBLEMS} are listed)")]
            raise ConfigError(self.file, self.items + (more if self.untold else []))


class Fields:
    """Typed, path-tracking access to one mapping of a document."""

    def __init__(self, value: Any, path: str, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        self._seen: set[str] = set()
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.add(path or "(top)", f"must be a mapping, not {type(value).__name__}")
            value = {}
        self.data: dict[str, Any] = value

    def _field(self, key: object) -> str:
        return join_path(self.path, key)

    def error(self, key: object, reason: str) -> None:
        self.problems.add(self._field(key), reason)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present; an optional key read only when present is still a
        valid key (see :meth:`finish`)."""
        self._seen.add(key)
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.error(key, "is required")
                return None
            return default
        return self.data[key]

    def text(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is None or (default is not _MISSING and value is default):
            return value
        if not isinstance(value, str) or not value:
            self.error(key, f"must be a non-empty string, not {shown(value)}")
            return None
        return value

    def name(self, key: str, max_len: int = IFNAME_MAX, default: Any = _MISSING) -> Any:
        """A name routeflow gives something it creates: a VM or host (a network namespace),
        a bridge, an interface. An identifier: nothing a command could read as an option or a path."""
        value = self.text(key, default)
        if value is default:
            return value
        if value is not None and (not _NAME.fullmatch(value) or len(value) > max_len):
            self.error(key, f"{shown(value)} must be a letter then letters, digits or '_', at most {max_len} long")
            return None
        return value

    def ifname(self, key: str, default: Any = _MISSING) -> Any:
        """An existing network interface's name, as Linux allows them (see :func:`ifname_problem`)."""
        value = self.text(key, default)
        if value is None or value is default:
            return value
        problem = ifname_problem(value)
        if problem:
            self.error(key, f"{shown(value)} is not an interface name: {problem}")
            return None
        return value

    def controller(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Open vSwitch controller targets (see :func:`controller_problem`): one, or a list of
        up to :data:`MAX_CONTROLLERS` (a controller pair: the switch connects to each);
        ``default`` if absent or invalid."""
        if key not in self.data:
            return default
        raw = self.raw(key)
        many = isinstance(raw, list)
        if many and not 1 <= len(raw) <= MAX_CONTROLLERS:
            self.error(key, f"lists {len(raw)} controller targets: 1 to {MAX_CONTROLLERS}")
            return default
        targets = []
        for i, value in enumerate(raw if many else [raw]):
            where = f"{self._field(key)}[{i}]" if many else self._field(key)
            if not isinstance(value, str) or not value:
                self.problems.add(where, f"must be a non-empty string, not {shown(value)}")
                return default
            problem = controller_problem(value)
            if problem:
                self.problems.add(where, f"{shown(value)} is not an OpenFlow controller target: {problem} "
                                         f"(expected {CONTROLLER_FORMS})")
                return default
            if value in targets:
                self.problems.add(where, f"{shown(value)} is listed twice")
                return default
            targets.append(value)
        return tuple(targets)

    def integer(self, key: str, default: Any = _MISSING, lo: int = 0, hi: int = 2**32 - 1) -> Any:
        value = self.raw(key, default)
        if value is None or (default is not _MISSING and value is default):
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.error(key, f"must be an integer from {lo} to {hi}, not {shown(value)}")
            return None
        return value

    def seconds(self, key: str, default: float, lo: float, hi: float) -> float:
        """A duration in seconds, an integer or a decimal number from ``lo`` to ``hi``."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            self.error(key, f"must be a number of seconds from {lo:g} to {hi:g}, not {shown(value)}")
            return default
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, not {shown(value)}")
            return default
        return value

    def dpid(self, key: str, default: Any = _MISSING) -> Any:
        """A datapath id: an integer or a hex string (``0x1``, ``00:00:..:01``)."""
        value = self.raw(key, default)
        if value is None or value is default:
            return value
        dpid = parse_dpid(value)
        if dpid is None:
            self.error(key, f"{shown(value)} is not a datapath id (1 to 2^64-1, integer or hex)")
        return dpid

    def choice(self, key: str, choices: Sequence[str], default: Any = _MISSING) -> Any:
        """One of ``choices`` (the members of a ``StrEnum``, say): the one equal to the value."""
        value = self.raw(key, default)
        if value is None:
            return None
        chosen = next((c for c in choices if c == value), None)
        if chosen is None:
            self.error(key, f"{shown(value)} is not one of {', '.join(choices)}")
        return chosen

    def seq(self, key: str, default: Any = _MISSING) -> list[Any]:
        value = self.raw(key, default)
        if value is None:
            return []
        if value is default:  # a field's default is a tuple
            return list(value)
        if not isinstance(value, list):
            self.error(key, f"must be a list, not {type(value).__name__}")
            return []
        return value

    def items(self, key: str, default: Any = _MISSING) -> Iterator[Fields]:
        """Each element of a list of mappings, as Fields."""
        for i, item in enumerate(self.seq(key, default)):
            yield Fields(item, f"{self._field(key)}[{i}]", self.problems)

    def interface_addresses(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        """A list of ``ADDRESS/PREFIXLEN`` interface addresses, IPv4 or IPv6, canonicalised."""
        result = []
        for i, value in enumerate(self.seq(key, default)):
            path = f"{self._field(key)}[{i}]"
            address = parse_interface_address(value)
            if isinstance(address, str):
                self.problems.add(path, address)
            else:
                result.append(str(address))
        return tuple(result)

    def ip(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is None or (default is not _MISSING and value is default):
            return value
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            self.error(key, f"{shown(value)} is not an IP address")
            return None

    def network(self, key: str, default: Any = _MISSING) -> Any:
        """An IPv4 network with its prefix length, host bits clear: ``10.255.1.0/24``."""
        value = self.raw(key, default)
        if value is None or (default is not _MISSING and value is default):
            return value
        try:
            return str(ipaddress.IPv4Network(value))
        except (ValueError, TypeError):
            self.error(key, f"{shown(value)} is not an IPv4 network (ADDRESS/PREFIXLEN with the host bits clear)")
            return None

    def mac(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is None or (default is not _MISSING and value is default):
            return value
        if not isinstance(value, str) or not _MAC.fullmatch(value.lower()):
            self.error(key, f"{shown(value)} is not a MAC address")
            return None
        return value.lower()

    def finish(self) -> None:
        """Report keys that no accessor read: typos and unsupported options, with the
        nearest valid key if one is close (``unknown key 'adresses'; did you mean 'addresses'?``)."""
        for key in self.data:
            if key not in self._seen:
                near = difflib.get_close_matches(key, sorted(self._seen), n=1) if isinstance(key, str) else []
                self.error(key, f"unknown key {shown(key)}; did you mean {near[0]!r}?" if near else "unknown key")


def parse_interface_address(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | str:
    """An interface address from YAML, or the reason it is not one.

    IPv6 link-local addresses are refused: the kernel gives every interface
    its own, and a second one is never what a topology means. So are the
    addresses of a subnet no host may take: its network address and, in IPv4, its
    broadcast address."""
    try:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError(value)
        address = ipaddress.ip_interface(value)
    except ValueError:
        return f"{shown(value)} is not an address with prefix length (like 172.31.1.1/24 or 2001:db8:1::1/64)"
    if address.ip.is_multicast or address.ip.is_unspecified:
        return f"{address.ip} is {'a multicast' if address.ip.is_multicast else 'an unspecified'} address"
    if address.version == 6 and address.ip.is_link_local:
        return f"{address.ip} is link-local: the kernel gives every interface one of its own"
    net = address.network
    # A /31 or /32 (/127, /128) has no network or broadcast address to avoid; IPv6 has no
    # broadcast, but its subnet's first address is the Subnet-Router anycast (RFC 4291).
    if net.num_addresses > 2 and address.version == 4 and address.ip in (net.network_address, net.broadcast_address):
        return f"{address} is the network or broadcast address of {net}"
    if net.num_addresses > 2 and address.version == 6 and address.ip == net.network_address:
        return f"{address} is the Subnet-Router anycast address of {net}"
    return address


def parse_dpid(value: Any) -> int | None:
    """A datapath id from YAML: int, ``"0x.."`` or colon-separated hex; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.replace(":", "") if ":" in value else value
        try:
            value = int(text, 16)
        except ValueError:
            return None
    if isinstance(value, int) and 0 < value < 2**64:
        return value
    return None


def check_unique(problems: Problems, path: str, what: str, values: list[tuple[str, Any]]) -> None:
    """Record a problem for each value seen twice; ``values`` are ``(field, value)``."""
    first: dict[Any, str] = {}
    for field, value in values:
        if value is None:
            continue
        if value in first:
            problems.add(field, f"duplicate {what} {shown(value)} (also at {first[value]})")
        else:
            first[value] = field


def ifname_problem(name: str) -> str | None:
    """Why ``name`` is no Linux interface name, or None if it is one.

    The kernel's rules (``dev_valid_name``): 1 to 15 bytes, not ``.`` or ``..``, no ``/``,
    ``:`` or whitespace; and ``%`` makes it a template the kernel numbers (``eth%d``). On
    top: no leading ``-``, which ``ip`` and ``ovs-vsctl`` would read as an option, and
    printable ASCII only.
    """
    if not name:
        return "it is empty"
    size = len(name.encode())
    if size > IFNAME_MAX:
        return f"it is {size} bytes long (at most {IFNAME_MAX})"
    if name in (".", ".."):
        return f"{name!r} is a directory name"
    if name.startswith("-"):
        return "it starts with '-', which commands would read as an option"
    for c in name:
        if c in "/:%":
            return f"it contains {c!r} (no '/', ':' or '%')"
        if c.isspace():
            return "it contains whitespace"
        if not (c.isascii() and c.isprintable()):
            return f"it contains {c!r} (printable ASCII only)"
    return None


def controller_problem(target: str) -> str | None:
    """Why ``target`` is no Open vSwitch controller target, or None if it is one.

    Active: ``tcp:IP[:PORT]``, ``ssl:IP[:PORT]``, ``unix:PATH``; passive (the switch
    listens): ``ptcp:[PORT][:IP]``, ``pssl:[PORT][:IP]``, ``punix:PATH``. An IPv6 address
    is in brackets (``tcp:[::1]:6653``). Host names are not resolved: an IP address only.
    A PATH is at most 107 bytes of letters, digits and ``._/@+~-``.
    """
    method, sep, rest = target.partition(":")
    if not sep:
        return "no METHOD: before the address"
    if method in ("unix", "punix"):
        if not rest:
            return "the socket path is empty"
        if len(rest) > UNIX_PATH_MAX:
            return f"the socket path is longer than {UNIX_PATH_MAX} bytes"
        if not _UNIX_PATH.fullmatch(rest):
            return "the socket path has characters other than letters, digits and ._/@+~-"
        return None
    if method in ("tcp", "ssl"):
        if rest.startswith("["):
            address, bracket, after = rest[1:].partition("]")
            if not bracket:
                return "no ']' after the IPv6 address"
            if after and not after.startswith(":"):
                return f"{shown(after)} after the IPv6 address is not :PORT"
            return _ip_problem(address, 6) or _port_problem(after[1:], optional=not after)
        address, sep, port = rest.partition(":")
        return _ip_problem(address, 4) or _port_problem(port, optional=not sep)
    if method in ("ptcp", "pssl"):
        port, sep, address = rest.partition(":")
        if sep and address.startswith("[") and address.endswith("]"):
            return _port_problem(port, optional=True) or _ip_problem(address[1:-1], 6)
        return _port_problem(port, optional=True) or (_ip_problem(address, 4) if sep else None)
    return f"unknown method {shown(method)}"


def _ip_problem(text: str, version: int) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or address.version != version or "%" in text:
        where = "an IPv4 address, or an IPv6 address in brackets" if version == 4 else "an IPv6 address"
        return f"{shown(text)} is not {where}"
    return None


def _port_problem(text: str, optional: bool) -> str | None:
    if not text and optional:
        return None
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        return f"port {shown(text)} is not a number from 1 to 65535"
    return None
