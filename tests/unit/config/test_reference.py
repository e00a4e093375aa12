"""The README's config-key reference is what the schema and the loader say, and says all of it."""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path

import pytest

from routeflow.config import reference, schema
from routeflow.config.loader import parse_config
from routeflow.errors import ConfigError

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_reference_is_generated_from_the_schema():
    readme = README.read_text()
    try:
        section = reference.current_section(readme)
    except ValueError:
        pytest.fail(f"README.md has no config reference between {reference.BEGIN} and {reference.END}")
    assert section == reference.render(), (
        "README.md's config reference differs from the schema and loader; regenerate it: " + reference.REGENERATE)


def _dataclass_fields(cls: type, seen: set[type] | None = None):
    """(class, field) of every dataclass field reachable from ``cls``."""
    seen = set() if seen is None else seen
    if cls in seen:
        return
    seen.add(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield cls, f.name
        inner = reference._dataclass_in(hints[f.name])
        if inner is not None:
            yield from _dataclass_fields(inner, seen)


def test_every_schema_field_is_a_documented_key():
    documented = {(chain[-1].owner, chain[-1].name)
                  for row in reference.rows() if (chain := reference.resolve(row.key))}
    missing = [f"{cls.__name__}.{name}" for cls, name in _dataclass_fields(schema.Config)
               if (cls, name) not in documented and f"{cls.__name__}.{name}" not in reference.NOT_KEYS]
    assert not missing, (f"schema fields no config key reads (a key the loader does not reach with "
                         f"reference.SAMPLE, or one named otherwise: reference.RENAMED): {missing}")


def test_every_key_has_a_type_and_a_meaning():
    rows = reference.rows()
    assert {r.key for r in rows} >= {"vms", "vms[].interfaces[].mac", "vms[].trunk.rfvs_interface",
                                     "rfvs.controller", "discovery.interval", "limits.unread_mib.client"}
    assert [r.key for r in rows if not (r.type and r.meaning)] == []


def test_words_outside_the_schema_only_where_it_has_none():
    """A ``#:`` comment added in schema.py must replace the entry of NOT_IN_SCHEMA: one source of words."""
    keys = {r.key for r in reference.rows()}
    comments = reference.field_comments()
    for path in reference.NOT_IN_SCHEMA:
        assert path in keys, f"NOT_IN_SCHEMA[{path!r}]: no such config key"
        chain = reference.resolve(path)
        if chain and path not in reference.RENAMED:
            last = chain[-1]
            assert (last.owner.__name__, last.name) not in comments, (
                f"schema.py comments {last.owner.__name__}.{last.name}: remove NOT_IN_SCHEMA[{path!r}]")


def test_field_comments_are_read_from_the_source():
    comments = reference.field_comments()
    assert comments[("VmInterface", "mac")].startswith("Fixed MAC for the NIC")
    assert ("VmInterface", "name") not in comments


def _set(document: dict, path: str, value: object) -> None:
    node = document
    *parents, last = path.split(".")
    for part in parents:
        node = node[part[:-2]][0] if part.endswith("[]") else node.setdefault(part, {})
    node[last] = value


def _range_problems(document: dict, path: str) -> list[str]:
    """The reasons the loader gives at ``path`` for a value out of its range (other rules,
    such as idle_timeout > keepalive, are not this test's business)."""
    field = path.replace("[]", "[0]")
    try:
        parse_config(document)
    except ConfigError as exc:
        return [reason for f, reason in exc.problems if f == field and " from " in reason]
    return []


@pytest.mark.parametrize("row", [r for r in reference.rows() if r.type.startswith(("integer", "seconds"))],
                         ids=lambda r: r.key)
def test_documented_bounds_are_the_loaders(row):
    low_text, high_text = row.type.split(", ", 1)[1].split(" to ")
    low, high = (int(v, 16) if v.startswith("0x") else float(v) for v in (low_text, high_text))
    whole = row.type.startswith("integer")

    def value(v: float) -> object:
        return int(v) if whole else v

    for inside in (low, high):
        document = copy.deepcopy(reference.SAMPLE)
        _set(document, row.key, value(inside))
        assert not _range_problems(document, row.key), (row.key, inside)
    for outside in (low - 1 if whole else low / 2, high + 1):
        document = copy.deepcopy(reference.SAMPLE)
        _set(document, row.key, value(outside))
        reasons = _range_problems(document, row.key)
        assert reasons, (row.key, outside)
        shown = [str(int(v)) if whole else f"{v:g}" for v in (low, high)]
        assert all(f"from {shown[0]} to {shown[1]}" in r for r in reasons), (row.key, reasons)


def test_replace_section_keeps_the_rest():
    text = f"intro\n{reference.BEGIN}\nold\n{reference.END}\noutro\n"
    assert reference.replace_section(text, "NEW") == "intro\nNEW\noutro\n"
    with pytest.raises(ValueError):
        reference.replace_section("no markers", "NEW")
