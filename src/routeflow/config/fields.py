"""Strict reading of YAML documents into typed values, collecting every error.

Both the routeflow config and lab topology files are read with
:class:`Fields`: each accessor checks one key, records a ``(field path,
reason)`` problem instead of raising, and :meth:`Fields.finish` reports keys
nobody asked for. The loader raises one :class:`~routeflow.errors.ConfigError`
listing everything wrong with the file.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from routeflow.errors import ConfigError

_MISSING = object()
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning every failure into a ConfigError naming it."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"invalid YAML: {getattr(exc, 'problem', exc)}")]) from exc


class Problems:
    """The problems found in one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, reason: str) -> None:
        self.items.append((field, reason))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.file, self.items)


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

    def _field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> None:
        self.problems.add(self._field(key), reason)

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
            self.error(key, f"must be a non-empty string, not {value!r}")
            return None
        return value

    def name(self, key: str, max_len: int = 15) -> Any:
        """An identifier usable as a namespace, bridge or interface name."""
        value = self.text(key)
        if value is not None and (not _NAME.match(value) or len(value) > max_len):
            self.error(key, f"{value!r} must be a letter then letters, digits or '_', at most {max_len} long")
            return None
        return value

    def ifname(self, key: str) -> Any:
        """An existing network interface's name, as Linux allows them."""
        value = self.text(key)
        if value is not None and (len(value) > 15 or value in (".", "..") or any(c in value for c in "/: \t\n")):
            self.error(key, f"{value!r} is not an interface name (at most 15 characters, no '/', ':' or spaces)")
            return None
        return value

    def integer(self, key: str, default: Any = _MISSING, lo: int = 0, hi: int = 2**32 - 1) -> Any:
        value = self.raw(key, default)
        if value is None or (default is not _MISSING and value is default):
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.error(key, f"must be an integer from {lo} to {hi}, not {value!r}")
            return None
        return value

    def seconds(self, key: str, default: float, lo: float, hi: float) -> float:
        """A duration in seconds, an integer or a decimal number from ``lo`` to ``hi``."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            self.error(key, f"must be a number of seconds from {lo:g} to {hi:g}, not {value!r}")
            return default
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, not {value!r}")
            return default
        return value

    def dpid(self, key: str) -> Any:
        """A datapath id: an integer or a hex string (``0x1``, ``00:00:..:01``)."""
        value = self.raw(key)
        if value is None:
            return None
        dpid = parse_dpid(value)
        if dpid is None:
            self.error(key, f"{value!r} is not a datapath id (1 to 2^64-1, integer or hex)")
        return dpid

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not None and value not in choices:
            self.error(key, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    def seq(self, key: str, default: Any = _MISSING) -> list[Any]:
        value = self.raw(key, default)
        if value is None:
            return []
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
            self.error(key, f"{value!r} is not an IP address")
            return None

    def mac(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is None or (default is not _MISSING and value is default):
            return value
        if not isinstance(value, str) or not _MAC.match(value.lower()):
            self.error(key, f"{value!r} is not a MAC address")
            return None
        return value.lower()

    def finish(self) -> None:
        """Report keys that no accessor read: typos and unsupported options."""
        for key in self.data:
            if key not in self._seen:
                self.error(str(key), "unknown key")


def parse_interface_address(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | str:
    """An interface address from YAML, or the reason it is not one.

    IPv6 link-local addresses are refused: the kernel gives every interface
    its own, and a second one is never what a topology means."""
    try:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError(value)
        address = ipaddress.ip_interface(value)
    except ValueError:
        return f"{value!r} is not an address with prefix length (like 172.31.1.1/24 or 2001:db8:1::1/64)"
    if address.ip.is_multicast or address.ip.is_unspecified:
        return f"{address.ip} is {'a multicast' if address.ip.is_multicast else 'an unspecified'} address"
    if address.version == 6 and address.ip.is_link_local:
        return f"{address.ip} is link-local: the kernel gives every interface one of its own"
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
            problems.add(field, f"duplicate {what} {value!r} (also at {first[value]})")
        else:
            first[value] = field
