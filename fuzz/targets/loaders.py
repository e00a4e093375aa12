"""Targets ``config`` and ``topology``: documents, YAML text and file bytes -> ``parse_config`` /
``parse_yaml`` / ``load_config`` (and ``parse_topology`` / ``load_topology``): a Config (a
topology) or ``ConfigError`` naming the source on every line."""

from __future__ import annotations

import atexit
import copy
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from fuzz import seeds
from fuzz.engine import Target
from fuzz.strategies import any_int, mutated
from fuzz.targets.common import packed, unpacked
from routeflow.config.loader import load_config, parse_config
from routeflow.config.safe_yaml import parse_yaml
from routeflow.errors import ConfigError
from routeflow.lab.topology import load_topology, parse_topology

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

