"""The config-key reference of the README, generated so that it cannot drift.

Every row comes from the code that decides it:

- *which keys exist*, their type, bounds and default: the loader itself. It is
  run on :data:`SAMPLE` with the accessors of
  :class:`~routeflow.config.fields.Fields` traced, so a key the loader reads is
  a row, with the bounds and default it was read with;
- *what a key means*: the ``#:`` comment above its dataclass field in
  :mod:`routeflow.config.schema` (for a section, the field's comment or its
  class's docstring); :data:`NOT_IN_SCHEMA` words the few fields the schema
  leaves uncommented, until it comments them.

``python -m routeflow.config.reference`` prints the reference;
``--update README.md`` (``make docs``) rewrites it between the README's
markers. ``tests/unit/config/test_reference.py`` fails when the README differs.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import functools
import inspect
import re
import sys
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routeflow.config import fields as fields_module
from routeflow.config import schema

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"
REGENERATE = "make docs (or: .venv/bin/python -m routeflow.config.reference --update README.md)"

#: A config the loader reads whole: every section present, so that every accessor runs.
SAMPLE: dict[str, Any] = {
    "rfvs": {"bridge": "rfvs", "dpid": 0x7266},
    "discovery": {},
    "limits": {},
    "store": {},
    "vms": [{
        "name": "rA",
        "dpid": 1,
        "interfaces": [{"name": "eth1", "port": 1}],
        "trunk": {"port": 100, "rfvs_interface": "eth9"},
    }],
    "templates": [{
        "name": "edge", "admit": [0x10], "router_ids": "10.255.1.0/24", "nic_config": "interface $ifname",
        "host_port": 1, "host_subnets": "10.1.0.0/16", "host_prefixlen": 24, "grace": 30,
    }],
}

#: Config keys whose name is not their schema field's: key path -> (class, field).
#: ``discovery`` has no field of its own: it is ordered with its one key.
RENAMED: dict[str, tuple[type, str]] = {
    "discovery": (schema.Config, "discovery_interval"),
    "discovery.interval": (schema.Config, "discovery_interval"),
    "limits.unread_mib": (schema.Limits, "unread"),
}

#: What a key means where schema.py has no ``#:`` comment (nor, for a section, a class
#: docstring) to say it. A comment added there replaces the entry here (a test insists).
NOT_IN_SCHEMA: dict[str, str] = {
    "vms[].name": "The VM's name: its network namespace and the prefix of its NICs' names on the RFVS "
                  "(`rA-eth1`).",
    "vms[].dpid": "The datapath id of the switch this VM mirrors: `0x1`, `00:00:00:00:00:00:00:01`, "
                  "`0000000000000001` (as `ovs-ofctl show` prints it) or decimal. Several VMs may give "
                  "the same one (multiplexing): each routes only the ports (or VLANs) its NICs claim.",
    "vms[].interfaces[].name": "The NIC's name inside the VM (`eth1`): what the routing engine's config names.",
    "vms[].interfaces[].port": "The switch port this NIC mirrors (its OpenFlow port number); with a `trunk`, "
                               f"1 to {schema.TRUNK_MAX_PORT} (the port travels as a VLAN id). "
                               "No other NIC of any VM may claim the same port (or port and `vlan`).",
    "vms[].interfaces[].addresses": "The router's addresses on that port, `ADDRESS/PREFIXLEN`, IPv4 or IPv6.",
    "vms[].engine": "The routing engine the VM runs: `frr` (with `daemons`), `bird`, or `none` (a FIB "
                    "managed by hand).",
    "vms[].daemons": "The FRR daemons besides zebra (which always runs): " + ", ".join(schema.FRR_DAEMONS) + ".",
    "vms[].loopback": "Addresses of the VM's loopback (router ids, `/32` and `/128`).",
    "templates[].engine": "The routing engine the template's VMs run: `frr` (with `daemons`) or `bird`.",
    "templates[].daemons": "The FRR daemons besides zebra.",
    "templates[].engine_config": "The engine's config, with placeholders: `$name`, `$dpid`, `$router_id`, "
                                 "`$host_subnet`, `$host_address`, `$interfaces` (`nic_config` per unnumbered NIC).",
    "rfvs.bridge": "The name of the RFVS bridge the server creates.",
    "rfvs.dpid": "The RFVS bridge's datapath id (no VM may mirror it).",
    "discovery": "Link discovery between switches, for VMs whose `routing_plane` is `virtual`.",
    "limits.handshake_timeout": "Seconds a peer has to connect and say hello (TLS handshake included).",
    "limits.idle_timeout": "Seconds of silence after which a peer with nothing left to read is dropped; "
                           "longer than `keepalive`.",
    "limits.max_connections": "RF-protocol connections open at once.",
    **{f"limits.unread_mib.{role}": f"MiB a peer of role `{role}` may leave unread." for role in schema.PEER_ROLES},
}

#: Schema fields that are no config key.
NOT_KEYS = {"Config.source"}

_MISSING = fields_module._MISSING
#: The Fields accessors that read one key, traced while the loader runs.
_ACCESSORS = ("raw", "has", "text", "name", "ifname", "controller", "integer", "seconds", "flag", "dpid", "network",
              "choice", "seq", "items", "interface_addresses", "ip", "mac")
#: How specific an accessor is: a key read twice (``has`` then ``name``; ``items``, a generator,
#: reads its list with ``seq`` once iterated) is described by its most specific reader.
_RANK = {"raw": 0, "text": 1, "seq": 1}
_INDEX = re.compile(r"\[\d+\]")


@dataclass
class Key:
    """One config key as the loader reads it."""

    path: str
    #: The most specific accessor that read it (``integer``, ``seconds``, ``name``...).
    accessor: str = ""
    #: That accessor's arguments (``default``, ``lo``, ``hi``, ``choices``, ``max_len``).
    args: dict[str, Any] = field(default_factory=dict)
    #: Read only if present (``has`` asked first).
    optional: bool = False


def loader_keys(sample: Mapping[str, Any] = SAMPLE) -> list[Key]:
    """Every key the loader reads while loading ``sample``, in the order it reads them."""
    from routeflow.config.loader import parse_config

    keys: dict[str, Key] = {}
    with _traced(keys):
        parse_config(sample, "<reference sample>")
    return list(keys.values())


@contextlib.contextmanager
def _traced(keys: dict[str, Key]) -> Iterator[None]:
    """Record every key read through a Fields accessor; the outermost accessor of a read
    says what it is (``name`` calls ``text``, which calls ``raw``). The accessors are
    replaced process-wide while it lasts: for generating documentation, not in a server."""
    cls = fields_module.Fields
    originals = {name: cls.__dict__[name] for name in _ACCESSORS}
    depth = [0]

    def wrap(name: str, method: Any) -> Any:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def traced(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
            if depth[0] == 0 and isinstance(key, str):
                bound = signature.bind(self, key, *args, **kwargs)
                bound.apply_defaults()
                path = _INDEX.sub("[]", f"{self.path}.{key}" if self.path else key)
                entry = keys.setdefault(path, Key(path))
                if name == "has":
                    entry.optional = entry.optional or not entry.accessor
                elif _RANK.get(name, 2) >= _RANK.get(entry.accessor, 2) or not entry.accessor:
                    entry.accessor = name
                    entry.args = {k: v for k, v in bound.arguments.items() if k not in ("self", "key")}
            depth[0] += 1
            try:
                return method(self, key, *args, **kwargs)
            finally:
                depth[0] -= 1
        return traced

    for name, method in originals.items():
        setattr(cls, name, wrap(name, method))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(cls, name, method)


# -- the schema's words ------------------------------------------------------------------


@functools.cache
def field_comments() -> dict[tuple[str, str], str]:
    """``(class, field) -> text`` of the ``#:`` comment lines right above each dataclass field of schema.py."""
    source = inspect.getsource(schema)
    lines = source.splitlines()
    comments: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                above: list[str] = []
                row = stmt.lineno - 2
                while row >= 0 and lines[row].strip().startswith("#:"):
                    above.insert(0, lines[row].strip()[2:].strip())
                    row -= 1
                if above:
                    comments[(node.name, stmt.target.id)] = " ".join(above)
    return comments


def markdown(text: str) -> str:
    """Sphinx roles and literals as Markdown code; one line."""
    text = re.sub(r"\s*\(see :\w+:`[^`]+`\)", "", text)  # pointers into the code are for its readers
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    text = re.sub(r"\bNone\b", "absent", text)  # what the YAML says by leaving the key out
    return " ".join(text.split())


def _docstring(cls: type) -> str:
    return (inspect.getdoc(cls) or "").split("\n\n")[0]


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field's type holds (``tuple[VmConfig, ...]``, ``Trunk | None``), if any."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class Field:
    """Where a key path lands in the schema."""

    owner: type
    name: str
    #: Its position in its class, for ordering.
    index: int
    hint: Any


def resolve(path: str) -> list[Field] | None:
    """The schema fields along ``path`` (``vms[].trunk.port``), None if it leaves the schema."""
    cls: type | None = schema.Config
    found: list[Field] = []
    segments = path.replace("[]", "").split(".")
    for i in range(len(segments)):
        prefix = ".".join(segments[: i + 1])
        renamed = next((v for k, v in RENAMED.items() if k.replace("[]", "") == prefix), None)
        if renamed is not None:
            cls, name = renamed
        elif cls is None:
            return None
        else:
            name = segments[i]
        names = [f.name for f in dataclasses.fields(cls)]
        if name not in names:
            return None
        hint = typing.get_type_hints(cls)[name]
        found.append(Field(cls, name, names.index(name), hint))
        cls = _dataclass_in(hint)
    return found


def meaning(path: str) -> str:
    """What ``path`` means: its field's ``#:`` comment, else (a section) its class's docstring,
    else :data:`NOT_IN_SCHEMA`; empty if none says."""
    if path in NOT_IN_SCHEMA:
        return NOT_IN_SCHEMA[path]
    chain = resolve(path)
    if chain:
        last = chain[-1]
        comment = field_comments().get((last.owner.__name__, last.name))
        if comment:
            return markdown(comment)
        section = _dataclass_in(last.hint)
        if section is not None:
            return markdown(_docstring(section))
        return ""
    parent, _, entry = path.rpartition(".")
    if parent and resolve(parent):  # an entry of a mapping field (limits.unread_mib.controller)
        return f"Its `{entry}` entry."
    return ""


# -- rows --------------------------------------------------------------------------------


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:#x}" if value >= 1 << 24 else str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _type(key: Key, hint: Any) -> str:
    a = key.args
    if key.accessor == "integer":
        return f"integer, {_number(a['lo'])} to {_number(a['hi'])}"
    if key.accessor == "seconds":
        return f"seconds, {_number(a['lo'])} to {_number(a['hi'])}"
    if key.accessor == "choice":
        return " or ".join(", ".join(f"`{c}`" for c in a["choices"]).rsplit(", ", 1))
    if key.accessor == "name":
        return f"name: a letter, then letters, digits or `_`; at most {a['max_len']}"
    described = {
        "ifname": "interface name", "controller": "Open vSwitch controller target, or a list of them", "flag": "`true` or `false`",
        "dpid": "datapath id", "items": "list of mappings", "interface_addresses": "list of `ADDRESS/PREFIXLEN`",
        "mac": "MAC address", "ip": "IP address", "network": "IPv4 network", "text": "text",
    }
    if key.accessor in described:
        return described[key.accessor]
    if key.accessor == "seq":
        return "list"
    if _dataclass_in(hint) is not None or isinstance(a.get("default"), dict) or typing.get_origin(hint) is Mapping:
        return "mapping"
    return "text" if hint is str else ""


def _default(key: Key, chain: list[Field] | None) -> str:
    default = key.args.get("default", _MISSING)
    if default is _MISSING and not key.optional:
        return "required"
    if default is _MISSING and chain:  # read only if present: the schema's default stands
        last = chain[-1]
        schema_field = {f.name: f for f in dataclasses.fields(last.owner)}[last.name]
        default = schema_field.default
        if default is dataclasses.MISSING and schema_field.default_factory is not dataclasses.MISSING:
            default = schema_field.default_factory()
    if default is None or default is _MISSING or default is dataclasses.MISSING:
        return "none"
    if isinstance(default, dict) or (dataclasses.is_dataclass(default) and not isinstance(default, type)):
        return "(defaults below)"
    if isinstance(default, (list, tuple)):
        return "`[" + ", ".join(str(v) for v in default) + "]`"
    if isinstance(default, str):
        return f"`{default}`" if default else '`""`'
    if key.accessor == "dpid" or (chain and chain[-1].name == "dpid"):
        return f"`{default:#x}`"
    return f"`{_number(default)}`"


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    meaning: str


def rows(keys: list[Key] | None = None) -> list[Row]:
    """One row per key the loader reads, each after its section, in the schema's field order."""
    keys = loader_keys() if keys is None else keys
    position = {k.path: i for i, k in enumerate(keys)}

    def order(key: Key) -> tuple[int, ...]:
        segments = key.path.split(".")
        ranks = []
        for i in range(len(segments)):
            prefix = ".".join(segments[: i + 1])
            chain = resolve(prefix)
            # Schema order where the schema has the key; else the order the loader reads it.
            ranks.append(chain[-1].index if chain else 1000 + position.get(prefix, 0))
        return tuple(ranks)

    result = []
    for key in sorted(keys, key=order):
        chain = resolve(key.path)
        hint = chain[-1].hint if chain else None
        result.append(Row(key.path, _type(key, hint), _default(key, chain), meaning(key.path)))
    return result


def render(table: list[Row] | None = None) -> str:
    """The reference as Markdown, markers included."""
    table = rows() if table is None else table

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        BEGIN,
        "<!-- Generated from src/routeflow/config/schema.py and loader.py by `make docs`: edit those, "
        "not this table. -->",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *(f"| `{r.key}` | {cell(r.type)} | {cell(r.default)} | {cell(r.meaning)} |" for r in table),
        "",
        END,
    ]
    return "\n".join(lines)


def replace_section(document: str, section: str) -> str:
    """``document`` with the text between (and including) the markers replaced by ``section``."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} ... {END} section")
    return document[:start] + section + document[end + len(END):]


def current_section(document: str) -> str:
    """The text between (and including) the markers of ``document``."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} ... {END} section")
    return document[start:end + len(END)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routeflow.config.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--update", metavar="FILE", help="rewrite FILE's config reference (between its markers)")
    args = parser.parse_args(argv)
    section = render()
    if args.update is None:
        sys.stdout.write(section + "\n")
        return 0
    path = Path(args.update)
    text = path.read_text()
    updated = replace_section(text, section)
    if updated != text:
        path.write_text(updated)
        sys.stdout.write(f"{path}: config reference updated\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
