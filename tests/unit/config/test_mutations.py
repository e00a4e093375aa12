"""Seeded structural mutations of the rftest2 files: each one loads, or raises ConfigError
naming the file on every line, quickly; never another exception or a hang."""

import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from routeflow.config.loader import load_config
from routeflow.errors import ConfigError
from routeflow.lab.topology import load_topology

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "rftest2"
SEED = 0x52460002
#: CPU seconds one case may take (they take a few milliseconds): CPU, not wall-clock, time,
#: so a busy machine does not fail the test.
CASE_SECONDS = 0.5

#: Values put in place of another: names and targets for commands, YAML 1.1 oddities, long and deep values.
VALUES = [
    b"-eth1", b"--help", b"eth1/0", b"'a b'", b".", b"..", b'"eth1\\n"', b"x" * 16, b"tcp:1.2.3.4\" x=1",
    b"ptcp:6653", b"unix:/run/x", b"2001-13-45", b"10:01", b"0000000000000010", b"0b" + b"1" * 70,
    b"1" * 5000, b"-0x" + b"f" * 65, b".nan", b"-.inf", b"~", b"[]", b"{}", b"=", b"<<", b"yes", b"!!int zz",
    b"!!binary aGk=", b"!!python/object/apply:os.system [true]", b"!foo x", b"!!str 7", b"!!set {a}",
    b"*l9", b"&a 1", b"[*a, *a]", b"'" + b"y" * 5000 + b"'", b'"\\x00"', b"? [a]", b"[" * 70 + b"]" * 70,
]
STRUCTURE = [b":", b": ", b"- ", b"[", b"]", b"{", b"}", b",", b"? ", b"|", b">", b"'", b'"', b"#", b"\t",
             b"\n", b"  ", b"&x ", b"*x", b"!", b"%", b"@", b"`", b"---\n", b"...\n", b"\\", b"\r"]
LAUGHS = b'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + b"".join(
    b"l%d: &l%d [%s]\n" % (i, i, b", ".join([b"*l%d" % (i - 1)] * 9)) for i in range(1, 10))


def _at(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def _values(data: bytes) -> list[int]:
    """Where values start: after ": " and "- "."""
    return [m.end() for m in re.finditer(rb"(?::|-) ", data)]


def flip_bit(rng, data):
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]


def random_byte(rng, data):
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]


def delete_span(rng, data):
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.choice([1, 1, 2, 5, 20, 200]):]


def insert_structure(rng, data):
    i = _at(rng, data)
    return data[:i] + rng.choice(STRUCTURE) + data[i:]


def duplicate_line(rng, data):
    lines = data.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    return b"".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])


def move_line(rng, data):
    lines = data.splitlines(keepends=True)
    line = lines.pop(rng.randrange(len(lines)))
    lines.insert(rng.randrange(len(lines) + 1), line)
    return b"".join(lines)


def _replace(data: bytes, i: int, value: bytes) -> bytes:
    """``data`` with the plain value at ``i`` replaced by ``value``."""
    end = i + len(re.match(rb"[^\s,\]}]*", data[i:]).group())
    return data[:i] + value + data[end:]


def replace_value(rng, data):
    return _replace(data, rng.choice(_values(data)), rng.choice(VALUES))


def anchor_and_alias(rng, data):
    """An anchor on one value and an alias to it for another (or before it: an undefined alias)."""
    first, second = sorted(rng.sample(_values(data), 2))
    anchored, aliased = (first, second) if rng.random() < 0.8 else (second, first)
    if anchored > aliased:  # edit the later place first: the earlier offset stays right
        return _replace(data[:anchored] + b"&a " + data[anchored:], aliased, b"*a")
    data = _replace(data, aliased, b"*a")
    return data[:anchored] + b"&a " + data[anchored:]


def alias_bomb(rng, data):
    """The billion laughs, with its last alias for a value (a name, a dpid...)."""
    return LAUGHS + _replace(data, rng.choice(_values(data)), b"*l9")


def deep_nesting(rng, data):
    depth = rng.choice([rng.randint(1, 80), rng.randint(60, 70), 1000, 5000])
    opener, closer = rng.choice([(b"[", b"]"), (b"{a: ", b"}"), (b"- ", b"")])
    i = rng.choice(_values(data))
    return data[:i] + opener * depth + b"1" + closer * depth * rng.randint(0, 1) + data[i:]


MUTATORS = [flip_bit, random_byte, delete_span, insert_structure, duplicate_line, move_line, replace_value,
            anchor_and_alias, alias_bomb, deep_nesting]


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if not data or not _values(data):
            break
        data = rng.choice(MUTATORS)(rng, data)
    return data


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, load, cases", [("routeflow.yaml", load_config, 1000),
                                               ("topology.yaml", load_topology, 1500)])
def test_mutations_load_or_raise_config_error(tmp_path, name, load, cases):
    rng = random.Random(f"{SEED}:{name}")
    original = (EXAMPLE / name).read_bytes()
    path = tmp_path / name
    outcomes: Counter[str] = Counter()
    for case in range(cases):
        data = mutate(rng, original)
        path.write_bytes(data)
        start = time.process_time()
        try:
            load(path)
            outcomes["loaded"] += 1
        except ConfigError as exc:
            assert exc.file == str(path) and exc.problems, (case, data)
            for line in str(exc).splitlines():
                assert line.startswith(f"{path}: ") and len(line) < len(str(path)) + 400, (case, line)
            reasons = " ".join(reason for _, reason in exc.problems)
            for kind in ("UTF-8", "alias", "nested deeper", "digits", "duplicate key", "invalid YAML", "tag"):
                outcomes[kind] += kind in reasons
        except Exception as exc:  # anything else is the bug this test is for
            pytest.fail(f"case {case} of {name}: {type(exc).__name__}: {exc}\n{data[:2000]!r}")
        elapsed = time.process_time() - start
        assert elapsed < CASE_SECONDS, f"case {case} of {name} took {elapsed:.2f} s\n{data[:2000]!r}"
    # The mutations reach every check (and leave some files valid).
    assert all(outcomes[kind] for kind in ("loaded", "UTF-8", "alias", "nested deeper", "digits", "duplicate key",
                                           "invalid YAML", "tag")), outcomes
