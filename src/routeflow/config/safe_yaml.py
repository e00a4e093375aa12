"""Reading an operator's YAML file defensively: every bad input becomes a problem naming the field.

Both the routeflow config (:mod:`routeflow.config.loader`) and the lab topology
(:mod:`routeflow.lab.topology`) are read by :func:`read_yaml`, and nothing
else: PyYAML's safe loading (no Python objects) with these limits on top,
each of which turns what would be a traceback, a hang or a silent surprise
into a problem reported like a validation error (``file: field: reason``):

* the file is read as at most :data:`MAX_FILE_BYTES` bytes of UTF-8, and a
  byte that is not UTF-8 (or a control character) is reported with its line
  and byte offset;
* aliases (``*name``) are refused (see "Aliases" below);
* collections nest at most :data:`MAX_DEPTH` deep;
* an integer has at most :data:`MAX_INT_DIGITS` digits;
* a key appears once per mapping; keys are plain values (no lists or mappings);
* an explicit tag (``!!int 5``) is ``!!str`` or the type the value has
  without it: no ``!!binary``, ``!!set``, ``!!python/...``, ``!custom``.

A file that cannot be read as YAML (unreadable, too large, not UTF-8, a
syntax error) is fatal: :func:`read_yaml` raises ConfigError at once, naming
the line. Any other problem leaves the bad value null and is returned with the
document, so that the loader reports it with every validation error of the
rest of the file (see :class:`routeflow.config.fields.Problems`, which drops
the errors that validating a nulled value would add).

Values shown in messages go through :func:`shown`, and field paths through
:func:`path_key`, which bound them.

Aliases are refused outright, rather than capped by an expansion budget. An
alias makes the document a graph whose expanded size grows exponentially with
the file (the "billion laughs"): every later walk over a value (validation,
comparison, and above all ``repr`` in an error message) pays for the
expansion, so a budget would have to be enforced on all of those, and a
recursive alias (``&a [*a]``) expands forever. Refused, the document is a
tree no bigger than the file. A routeflow file has little to share (each VM's
interfaces and engine config differ) and no example uses aliases. An anchor
alone is harmless, so it is accepted (and ignored); merge keys (``<<``) only
make sense with aliases and are refused with them.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from routeflow.errors import ConfigError

#: Largest file read, bytes. The rftest2 config is 8 KB for its 4 VMs, with a full engine config
#: each: 256 KiB holds some 130 such VMs, and bounds what the worst file costs to read and
#: validate (130,000 one-letter VMs: about 3 s).
MAX_FILE_BYTES = 256 << 10
#: Deepest nesting of lists and mappings. A config nests 4 deep (vms[0].interfaces[0].addresses);
#: PyYAML composes recursively and hits Python's recursion limit near 1,000 levels.
MAX_DEPTH = 64
#: Most digits in an integer (sign, ``0x``/``0b`` prefix, ``_`` and ``:`` not counted):
#: a 64-bit datapath id takes 64 binary digits. Python refuses to convert a decimal of more than
#: 4,300 digits (ValueError), and base-60 integers (``1:2:3``) cost time quadratic in their length.
MAX_INT_DIGITS = 64
#: Longest rendering of a value in a message (see :func:`shown`), characters.
MAX_SHOWN = 60
#: Longest mapping key written as such in a field path (longer ones are shown bounded).
MAX_KEY = 40

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
# What PyYAML's reader refuses: control characters other than tab and newlines, surrogates, U+FFFE/FFFF.
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_@$%+-]+")
_DEPTH_EXCEEDED = "exceeded maximum nesting depth"  # libyaml's words


class _Shown(reprlib.Repr):
    """``repr`` within bounds: long strings are cut in the middle, long lists after 5 items,
    nesting after 2 levels (an expanded alias bomb, built in Python, shows in a few characters)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxstring = MAX_SHOWN
        self.maxother = MAX_SHOWN
        self.maxlong = MAX_SHOWN
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 5
        self.maxdict = 4

    def repr_int(self, x: int, level: int) -> str:
        # repr() of an int of more than 4,300 digits raises ValueError.
        if x.bit_length() > 4 * MAX_SHOWN:
            return f"<{'negative ' if x < 0 else ''}integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHOWN = _Shown()


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, marked ``...`` where cut."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown(value: object) -> str:
    """``repr(value)`` for a message, bounded whatever the value (a huge string, int, nested list)."""
    return clip(_SHOWN.repr(value), MAX_SHOWN + 10)


def path_key(key: object) -> str:
    """How mapping key ``key`` is written in a field path: itself if short and plain, else shown."""
    if isinstance(key, str) and len(key) <= MAX_KEY and _PLAIN_KEY.fullmatch(key):
        return key
    return shown(key)


def join_path(parent: str, key: object) -> str:
    """The field path of ``key`` in the mapping at ``parent`` ("" for the top)."""
    return f"{parent}.{path_key(key)}" if parent else path_key(key)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed file: its value, and the ``(field, reason)`` problems found reading it,
    whose values are null in ``value``."""

    value: Any
    problems: tuple[tuple[str, str], ...] = ()


class _Fatal(Exception):
    """The file cannot be read further: its one problem."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _line(mark: Any) -> str:
    return f"line {mark.line + 1}" if mark is not None else "(file)"


def _tag(tag: str) -> str:
    """A tag as written in a file (``!!int``), bounded."""
    return clip(tag.replace("tag:yaml.org,2002:", "!!"), MAX_KEY)


def _field(path: str) -> str:
    """A field path for a message: bounded (a path 64 levels deep can be long)."""
    path = path or "(top)"
    return path if len(path) <= 2 * MAX_SHOWN else f"{path[:MAX_SHOWN]}...{path[-MAX_SHOWN + 3:]}"


class _StrictComposer(Composer):
    """PyYAML's composer with the limits above; each problem is recorded against the field's
    path, and the offending node is replaced by a null so that composing goes on."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[tuple[str, str]] = []
        self._paths: list[str] = []  # path of each collection being composed, innermost last
        self._rejected: set[int] = set()  # ids of the null nodes that replace bad ones

    def _reject(self, event: Any, path: str, is_key: bool, reason: str) -> ScalarNode:
        """Record ``reason`` for the node starting at ``event``; a null node to put in its place."""
        line = event.start_mark.line + 1
        self.problems.append((_field(path), f"key on line {line}: {reason}" if is_key else f"{reason} (line {line})"))
        node = ScalarNode(_NULL, "", event.start_mark, event.end_mark)
        self._rejected.add(id(node))
        return node

    def _skip(self, path: str, is_key: bool, reason: str) -> ScalarNode:
        """Consume the events of the collection that starts next without composing it; reject it."""
        start = self.peek_event()
        level = 0
        try:
            while True:
                event = self.get_event()
                if isinstance(event, CollectionStartEvent):
                    level += 1
                elif not isinstance(event, (ScalarEvent, AliasEvent)):
                    level -= 1
                if level == 0:
                    break
        except yaml.YAMLError as exc:
            # The stream breaks inside what is skipped: the reason for skipping is the better message.
            raise _Fatal(_field(path), f"{reason} (line {start.start_mark.line + 1}); the file cannot be "
                                       "read past it") from exc
        return self._reject(start, path, is_key, reason)

    def _child_path(self, parent: Node | None, index: Any) -> tuple[str, bool]:
        """The field path of a node composed at ``index`` of ``parent``, and whether it is a key
        (a key's problems are reported at its mapping's path)."""
        if parent is None:
            return "", False
        where = self._paths[-1]
        if isinstance(parent, SequenceNode):
            return f"{where}[{index}]", False
        if index is None:
            return where, True
        if id(index) in self._rejected or not isinstance(index, ScalarNode):
            return where, False
        return join_path(where, self.construct_object(index)), False  # type: ignore[attr-defined]

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        path, is_key = self._child_path(parent, index)
        # Anchors mean nothing without aliases: forget them, so that one used twice is no error.
        self.anchors.clear()
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self.get_event()
            return self._reject(event, path, is_key, f"alias *{clip(str(event.anchor), MAX_KEY)} is not allowed: "
                                                     "aliases are refused, write the value out")
        explicit = event.tag not in (None, "!")
        if isinstance(event, ScalarEvent):
            return self._scalar(super().compose_node(parent, index), event, path, is_key, explicit)
        if len(self._paths) >= MAX_DEPTH:
            return self._skip(path, is_key, f"nested deeper than {MAX_DEPTH} levels")
        default = _SEQ if isinstance(event, SequenceStartEvent) else _MAP
        if explicit and event.tag != default:
            return self._skip(path, is_key, f"tag {_tag(event.tag)} is not allowed here: only !!seq "
                                            "on a list, !!map on a mapping")
        self._paths.append(path)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._paths.pop()
        if isinstance(event, MappingStartEvent):
            self._check_keys(node, path)
        if is_key:
            return self._reject(event, path, is_key, "a list or a mapping cannot be a key: keys must be plain values")
        return node

    def _scalar(self, node: ScalarNode, event: Any, path: str, is_key: bool, explicit: bool) -> Node:
        value = node.value
        if explicit and node.tag not in (_STR, self.resolve(ScalarNode, value, (True, False))):  # type: ignore
            return self._reject(event, path, is_key, f"tag {_tag(event.tag)} does not fit {shown(value)}: "
                                                     "only !!str or the value's own type")
        if node.tag == _MERGE:
            return self._reject(event, path, is_key, "merge keys (<<) are not allowed: they merge aliases, "
                                                     "which are refused")
        if node.tag == _VALUE:  # a plain "=": a string, as PyYAML makes it as a key
            node.tag = _STR
        if node.tag == _INT:
            digits = len(re.sub(r"^[-+]?(0[xb])?|[_:]", "", value))
            if digits > MAX_INT_DIGITS:
                return self._reject(event, path, is_key, f"an integer of {digits} digits is too long: "
                                                         f"at most {MAX_INT_DIGITS}")
        try:
            self.construct_object(node)  # type: ignore[attr-defined]
        except (yaml.YAMLError, ValueError, ArithmeticError):
            return self._reject(event, path, is_key, f"{shown(value)} is not a valid {_tag(node.tag)[2:]}")
        return node

    def _check_keys(self, node: MappingNode, path: str) -> None:
        """Drop the pairs whose key was rejected, and every repeat of a key, reporting the repeats."""
        first: dict[Any, tuple[int, int]] = {}  # key: (line, column) where first seen
        kept = []
        for key_node, value_node in node.value:
            if id(key_node) in self._rejected:
                continue
            key = self.construct_object(key_node)  # type: ignore[attr-defined]
            line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key in first:
                line1, column1 = first[key]
                where = (f"on line {line} (first on line {line1})" if line != line1 else
                         f"on line {line}, column {column} (first at column {column1})")
                self.problems.append((_field(join_path(path, key)), f"duplicate key {shown(key)} {where}"))
                continue
            first[key] = (line, column)
            kept.append((key_node, value_node))
        node.value = kept


class _Scanner(yaml.scanner.Scanner):
    """PyYAML's scanner, stopping at 1,000 flow levels as libyaml's does: it checks every
    open flow level at each token, which is quadratic in the depth (5,000 levels: seconds)."""

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= 1000:
            raise yaml.scanner.ScannerError("while increasing flow level", None, _DEPTH_EXCEEDED,
                                            self.get_mark())
        super().fetch_flow_collection_start(TokenClass)


class _CoreResolver(Resolver):
    """PyYAML's resolver with YAML 1.2's numbers: no octal from a leading 0 and no base
    60 from colons, so a datapath id pasted from ``ovs-ofctl show``
    (``0000000000000010``) or written as bytes (``00:00:00:00:00:00:00:10``) stays the
    text it is, for the field to read as hex; ``0x``/``0o`` prefixes and plain decimals
    are numbers as before."""


_CORE_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|[-+]?0x[0-9a-fA-F]+|0o[0-7]+)$")
_CORE_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_CoreResolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}
_CoreResolver.add_implicit_resolver(_INT, _CORE_INT, list("-+0123456789"))
_CoreResolver.add_implicit_resolver(_FLOAT, _CORE_FLOAT, list("-+.0123456789"))


def _loader_class(libyaml: bool) -> Any:
    """The loader: libyaml's scanner and parser if PyYAML has them (about 4 times faster than
    PyYAML's own), then the composer above (in Python: the C one cannot be limited), and
    PyYAML's safe constructor and resolver."""
    parser: tuple[type, ...] = ((yaml.cyaml.CParser,) if libyaml else
                                (yaml.reader.Reader, _Scanner, yaml.parser.Parser))

    def __init__(self: Any, text: str) -> None:
        if libyaml:
            yaml.cyaml.CParser.__init__(self, text)
        else:
            yaml.reader.Reader.__init__(self, text)
            _Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
        _StrictComposer.__init__(self)
        SafeConstructor.__init__(self)
        _CoreResolver.__init__(self)

    return type("StrictLoader", (_StrictComposer, *parser, SafeConstructor, _CoreResolver), {"__init__": __init__})


_StrictLoader = _loader_class(bool(getattr(yaml, "__with_libyaml__", False)))


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _Fatal("(file)", exc.strerror or str(exc)) from exc
    if len(data) > MAX_FILE_BYTES:
        raise _Fatal("(file)", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _Fatal(f"line {line}", f"not UTF-8: byte {data[exc.start]:#04x} at byte offset {exc.start} "
                                     f"({exc.reason})") from exc


def _parse(text: str) -> YamlDocument:
    match = _NON_PRINTABLE.search(text)
    if match:
        offset = len(text[:match.start()].encode())
        line = text.count("\n", 0, match.start()) + 1
        raise _Fatal(f"line {line}", f"control character U+{ord(match.group()):04X} at byte offset {offset} "
                                     "is not allowed")
    loader = _StrictLoader(text)
    try:
        value = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None)
        if problem == _DEPTH_EXCEEDED:  # libyaml's own limit (1,000 levels), or _Scanner's
            raise _Fatal(_line(mark), f"nested deeper than {MAX_DEPTH} levels") from exc
        what = "; ".join(str(p) for p in (getattr(exc, "context", None), problem) if p) or str(exc)
        column = f" (column {mark.column + 1})" if mark is not None else ""
        raise _Fatal(_line(mark), f"invalid YAML: {clip(' '.join(what.split()), 200)}{column}") from exc
    finally:
        loader.dispose()
    return YamlDocument(value, tuple(loader.problems))


def parse_yaml(text: str, source: str = "<yaml>") -> YamlDocument:
    """Parse ``text`` with the limits above: the document, and the problems found in it.

    Raise :class:`~routeflow.errors.ConfigError` naming ``source`` if it cannot be parsed."""
    try:
        return _parse(text)
    except _Fatal as exc:
        raise ConfigError(source, [(exc.field, exc.reason)]) from exc


def read_yaml(path: str | Path) -> YamlDocument:
    """Read and parse the YAML file ``path`` with the limits above: the document, and the
    problems found in it.

    Raise :class:`~routeflow.errors.ConfigError` naming the file if it cannot be read or parsed."""
    try:
        return _parse(_read_text(Path(path)))
    except _Fatal as exc:
        raise ConfigError(str(path), [(exc.field, exc.reason)]) from exc
