"""Reading YAML files defensively: every bad input is a ConfigError naming the file, the field
and the reason; never a traceback, a hang or silent acceptance."""

import time
from pathlib import Path

import pytest
from tests.problems import problems

from routeflow.config import safe_yaml
from routeflow.config.fields import MAX_PROBLEMS
from routeflow.config.loader import load_config
from routeflow.config.safe_yaml import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_INT_DIGITS,
    YamlDocument,
    parse_yaml,
    path_key,
    shown,
)
from routeflow.errors import ConfigError
from routeflow.lab.topology import load_topology

#: A valid config; line 3 is the VM's name, line 4 its dpid.
BASE = """\
rfvs: {bridge: rfvs, dpid: 0x7266}
vms:
  - name: rA
    dpid: 0x1
    interfaces:
      - {name: eth1, port: 1, addresses: [172.31.1.1/24]}
"""

#: A valid topology; line 2 is the switch.
TOPOLOGY = """\
switches:
  - {name: s1, dpid: 1}
hosts:
  - {name: h1, addresses: [172.31.1.2/24]}
links:
  - {ends: ["s1:1", h1]}
"""

#: Nine levels of nine aliases each: 9**9 (387 million) "lol" once expanded.
LAUGHS = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))

ALIAS = "alias *{} is not allowed: aliases are refused, write the value out (line {})"


def file_problems(tmp_path: Path, content: str | bytes, load=load_config) -> dict[str, str]:
    """The problems ``load`` reports reading ``content`` from a file, by field."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    found = problems(lambda _document, file: load(file), None, str(path))
    assert all(len(field) + len(reason) < 300 for field, reason in found.items()), found
    return found


def error_of(tmp_path: Path, content: str | bytes, load=load_config) -> ConfigError:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value


def test_base_documents_load(tmp_path):
    (tmp_path / "c.yaml").write_text(BASE)
    (tmp_path / "t.yaml").write_text(TOPOLOGY)
    assert load_config(tmp_path / "c.yaml").vms[0].dpid == 1
    assert load_topology(tmp_path / "t.yaml").switches[0].name == "s1"


# -- bytes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("load", [load_config, load_topology])
def test_non_utf8_byte_names_its_line_and_offset(tmp_path, load):
    data = b"vms:\n  - name: r\xff\n"
    assert file_problems(tmp_path, data, load) == {
        "line 2": "not UTF-8: byte 0xff at byte offset 16 (invalid start byte)"}
    # A multi-byte sequence cut short by the end of the file.
    assert file_problems(tmp_path, BASE.encode() + b"# caf\xc3", load) == {
        "line 7": f"not UTF-8: byte 0xc3 at byte offset {len(BASE) + 5} (unexpected end of data)"}
    path = tmp_path / "bad.yaml"
    assert str(error_of(tmp_path, data, load)) == (
        f"{path}: line 2: not UTF-8: byte 0xff at byte offset 16 (invalid start byte)")


def test_control_character_names_its_line_and_offset(tmp_path):
    found = file_problems(tmp_path, BASE.replace("rA", "r\x01A"))
    assert found == {"line 3": "control character U+0001 at byte offset 51 is not allowed"}
    # Offsets count bytes, not characters.
    found = file_problems(tmp_path, "# é\nvms: \x00\n")
    assert found == {"line 2": "control character U+0000 at byte offset 10 is not allowed"}


def test_file_size_is_limited(tmp_path):
    padded = BASE + "#" * (MAX_FILE_BYTES - len(BASE) - 1) + "\n"
    (tmp_path / "big.yaml").write_text(padded)
    assert len(load_config(tmp_path / "big.yaml").vms) == 1
    assert file_problems(tmp_path, padded + "#") == {"(file)": f"larger than {MAX_FILE_BYTES} bytes"}


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.file == str(tmp_path) and info.value.problems == [("(file)", "Is a directory")]


# -- aliases -----------------------------------------------------------------------------------

@pytest.mark.timeout(10)
def test_alias_bomb_in_name_and_dpid_is_refused_at_once(tmp_path):
    bomb = LAUGHS + BASE.replace("name: rA", "name: *l9").replace("dpid: 0x1", "dpid: *l9")
    start = time.process_time()
    error = error_of(tmp_path, bomb)
    assert time.process_time() - start < 1  # CPU seconds: no expansion, whatever else the machine runs
    found = dict(error.problems)
    assert found["vms[0].name"] == ALIAS.format("l9", 13)
    assert found["vms[0].dpid"] == ALIAS.format("l9", 14)
    assert found["l1[0]"] == ALIAS.format("l0", 2)
    assert found["l0"] == "unknown key"  # the anchor alone is fine
    assert len(str(error)) < 100_000


@pytest.mark.timeout(10)
def test_alias_bomb_in_a_topology(tmp_path):
    bomb = LAUGHS + TOPOLOGY.replace("{name: s1, dpid: 1}", "{name: *l9, dpid: *l9}")
    start = time.process_time()
    found = file_problems(tmp_path, bomb, load_topology)
    assert time.process_time() - start < 1  # CPU seconds: no expansion, whatever else the machine runs
    assert found["switches[0].name"] == ALIAS.format("l9", 12)
    assert found["switches[0].dpid"] == ALIAS.format("l9", 12)


def test_aliases_are_refused_anchors_accepted(tmp_path):
    found = file_problems(tmp_path, BASE.replace("name: rA", "name: &n rA") + "  - name: *n\n")
    assert found["vms[1].name"] == ALIAS.format("n", 7)
    # The nulled name adds nothing ("is required", "must be a string"); the rest still is checked.
    assert found["vms[1].dpid"] == "is required"
    (tmp_path / "ok.yaml").write_text(BASE.replace("name: rA", "name: &n rA"))
    assert load_config(tmp_path / "ok.yaml").vms[0].name == "rA"
    # A recursive alias, a merge key, an alias as a key.
    assert parse_yaml("&a [*a]").problems == (("[0]", ALIAS.format("a", 1)),)
    assert parse_yaml("a: {<<: {b: 1}}").problems == (
        ("a", "key on line 1: merge keys (<<) are not allowed: they merge aliases, which are refused"),)
    assert parse_yaml("a: 1\n*x : 2\n").problems == (
        ("(top)", "key on line 2: alias *x is not allowed: aliases are refused, write the value out"),)


# -- nesting -----------------------------------------------------------------------------------

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_is_limited():
    # The top mapping is one level: under its key, MAX_DEPTH - 1 more.
    assert parse_yaml(f"x: {nested(MAX_DEPTH - 1)}").problems == ()
    (field, reason), = parse_yaml(f"x: {nested(MAX_DEPTH)}").problems
    assert reason == f"nested deeper than {MAX_DEPTH} levels (line 1)"
    assert field.startswith("x[0][0]") and "..." in field and len(field) <= 120
    block = "vms:\n" + "".join("  " * i + "- \n" for i in range(1, 100))
    (field, reason), = parse_yaml(block).problems
    assert reason == f"nested deeper than {MAX_DEPTH} levels (line {MAX_DEPTH + 1})"


@pytest.mark.parametrize("load", [load_config, load_topology])
@pytest.mark.parametrize("style", ["flow", "block"])
def test_nesting_5000_deep_is_an_error(tmp_path, load, style):
    if style == "flow":
        text = f"vms:\n  - {nested(5000)}\n"
    else:
        text = "vms:\n  " + "- " * 5000 + "x\n"
    found = file_problems(tmp_path, text, load)
    assert any(reason.startswith(f"nested deeper than {MAX_DEPTH} levels") for reason in found.values()), found


# -- integers ----------------------------------------------------------------------------------

def test_long_integers_are_an_error(tmp_path):
    found = file_problems(tmp_path, BASE.replace("dpid: 0x1", "dpid: " + "1" * 5000))
    # Only the reading problem: nothing repeats it (no "is required" for the nulled dpid).
    assert found == {"vms[0].dpid": f"an integer of 5000 digits is too long: at most {MAX_INT_DIGITS} (line 4)"}
    found = file_problems(tmp_path, BASE.replace("port: 1", "port: -0x" + "f" * (MAX_INT_DIGITS + 1)))
    assert found == {"vms[0].interfaces[0].port":
                     f"an integer of {MAX_INT_DIGITS + 1} digits is too long: at most {MAX_INT_DIGITS} (line 6)"}
    # No base 60 (a YAML 1.1 form): colons make text, which costs nothing to read.
    assert parse_yaml("a: " + ":".join(["59"] * 40)).problems == ()
    # At the limit it is read, and the field's own check reports it, shown bounded.
    found = file_problems(tmp_path, BASE.replace("port: 1", "port: " + "9" * MAX_INT_DIGITS))
    assert found == {"vms[0].interfaces[0].port": f"must be an integer from 1 to 4294967040, not {'9' * 28}...{'9' * 29}"}


@pytest.mark.parametrize("dpid, value", [
    ("0000000000000010", 0x10),            # as ovs-ofctl show prints it, unquoted: hex, never octal
    ('"0000000000000019"', 0x19),          # quoted alike
    ("00:00:00:00:00:00:00:10", 0x10),     # colon-separated bytes, never base 60
    ("10:01", 0x1001),
    ('"10:01"', 0x1001),
    ("0x1f", 0x1F),                        # 0x hex
    ("0x00000000000000FF", 0xFF),
    ("16", 16),                            # a plain decimal integer
    ("0o20", 16),                          # YAML 1.2 octal, said so
])  # fmt: skip
def test_dpids_are_read_as_openflow_tools_print_them(tmp_path, dpid, value):
    (tmp_path / "c.yaml").write_text(BASE.replace("dpid: 0x1", f"dpid: {dpid}"))
    assert load_config(tmp_path / "c.yaml").vms[0].dpid == value


def test_numbers_with_a_leading_zero_or_colons_are_not_numbers(tmp_path):
    # A port written 010 is no silent 8 (YAML 1.1): it is not an integer at all.
    found = file_problems(tmp_path, BASE.replace("port: 1", "port: 010"))
    assert found == {"vms[0].interfaces[0].port": "must be an integer from 1 to 4294967040, not '010'"}


# -- keys --------------------------------------------------------------------------------------

def test_duplicate_keys_name_both_lines(tmp_path):
    text = BASE.replace("    dpid: 0x1\n", "    dpid: 0x1\n    name: rB\n")
    assert file_problems(tmp_path, text) == {"vms[0].name": "duplicate key 'name' on line 5 (first on line 3)"}
    text = BASE.replace("{name: eth1, port: 1,", "{name: eth1, port: 1, port: 2,") + "vms: []\n"
    assert file_problems(tmp_path, text) == {
        "vms[0].interfaces[0].port": "duplicate key 'port' on line 6, column 31 (first at column 22)",
        "vms": "duplicate key 'vms' on line 7 (first on line 2)",
    }
    # Keys equal once read are duplicates too (True == 1, 0x1 == 1).
    assert [r for _, r in parse_yaml("1: a\ntrue: b\n0x1: c\n").problems] == [
        "duplicate key True on line 2 (first on line 1)", "duplicate key 1 on line 3 (first on line 1)"]


def test_complex_keys_are_an_error():
    document = parse_yaml("a: 1\n? [x]\n: 2\n")
    assert document == YamlDocument({"a": 1}, (
        ("(top)", "key on line 2: a list or a mapping cannot be a key: keys must be plain values"),))


# -- tags and values ---------------------------------------------------------------------------

def test_explicit_tags(tmp_path):
    text = BASE.replace("dpid: 0x1", "dpid: !!int zz").replace("name: rA", "name: !!binary cjE=")
    assert file_problems(tmp_path, text) == {
        "vms[0].dpid": "tag !!int does not fit 'zz': only !!str or the value's own type (line 4)",
        "vms[0].name": "tag !!binary does not fit 'cjE=': only !!str or the value's own type (line 3)",
    }
    found = file_problems(tmp_path, BASE.replace("dpid: 0x1", "dpid: !!python/object/apply:os.system [true]"))
    assert found == {"vms[0].dpid": "tag !!python/object/apply:os.system is not allowed here: only !!seq on a list, "
                                    "!!map on a mapping (line 4)"}
    # !!str, and a tag that says what the value is anyway, are fine.
    (tmp_path / "c.yaml").write_text(BASE.replace("dpid: 0x1", "dpid: !!str 0x10").replace("port: 1", "port: !!int 1"))
    assert load_config(tmp_path / "c.yaml").vms[0].dpid == 16


def test_values_the_constructor_refuses(tmp_path):
    found = file_problems(tmp_path, BASE.replace("dpid: 0x1", "dpid: 2001-13-01"))
    assert found == {"vms[0].dpid": "'2001-13-01' is not a valid timestamp (line 4)"}
    assert parse_yaml("a: =\n").value == {"a": "="}


def test_syntax_errors_are_fatal_with_their_line(tmp_path):
    assert file_problems(tmp_path, "vms: [\n") == {
        "line 2": "invalid YAML: while parsing a flow node; did not find expected node content (column 1)"}
    assert file_problems(tmp_path, BASE + "---\n" + BASE) == {
        "line 7": "invalid YAML: expected a single document in the stream; but found another document (column 1)"}
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: [1,\n  b: c\n", "text.yaml")
    assert str(info.value) == ("text.yaml: line 3: invalid YAML: while parsing a flow sequence; "
                               "did not find expected ',' or ']' (column 1)")


# -- messages ----------------------------------------------------------------------------------

def test_values_in_messages_are_bounded(tmp_path):
    long = "x" * 50_000
    text = (BASE.replace("name: rA", f"name: {long}").replace("port: 1,", f"port: '{long}',")
            + f"? {long}\n: 1\nlisten: ['{long}']\n")  # (a long key must be explicit: "?")
    error = error_of(tmp_path, text)
    assert all(len(line) < 300 for line in str(error).splitlines()), str(error)
    found = dict(error.problems)
    short = f"'{'x' * 27}...{'x' * 28}'"
    assert found["vms[0].name"] == f"{short} must be a letter then letters, digits or '_', at most 10 long"
    assert found["vms[0].interfaces[0].port"] == f"must be an integer from 1 to 4294967040, not {short}"
    assert found[short] == "unknown key"
    assert found["listen[0]"] == f"{short} is not an address: expected unix:PATH, tcp:HOST:PORT or tls:HOST:PORT"


def test_shown_and_path_key_are_bounded():
    bomb: list = ["lol"] * 9
    for _ in range(9):
        bomb = [bomb] * 9
    start = time.process_time()
    assert shown(bomb) == "[[[...], [...], [...], [...], [...], ...], [[...], [...], [...], [...."
    assert time.process_time() - start < 1  # CPU seconds: no expansion, whatever else the machine runs
    assert shown(10 ** 5000) == "<integer of 16610 bits>"
    assert shown(-(10 ** 5000)) == "<negative integer of 16610 bits>"
    assert shown("short") == "'short'" and shown(7) == "7"
    assert path_key("name") == "name" and path_key("a b") == "'a b'" and path_key(None) == "None"
    assert path_key("a\nb") == "'a\\nb'"  # a message is one line per problem
    assert len(path_key("k" * 1000)) <= 70


def test_every_problem_is_reported_up_to_a_bound(tmp_path):
    """Reading problems and validation errors together, in one report."""
    text = (BASE.replace("dpid: 0x1", "dpid: *nowhere").replace("port: 1,", "port: 1, mac: nope,")
            + "  - name: rB\n    name: rC\n    dpid: " + "7" * 100 + "\n    interfaces: [{name: -e, port: 1}]\n")
    assert file_problems(tmp_path, text) == {
        "vms[0].dpid": ALIAS.format("nowhere", 4),
        "vms[0].interfaces[0].mac": "'nope' is not a MAC address",
        "vms[1].name": "duplicate key 'name' on line 8 (first on line 7)",
        "vms[1].dpid": "an integer of 100 digits is too long: at most 64 (line 9)",
        "vms[1].interfaces[0].name": "'-e' must be a letter then letters, digits or '_', at most 15 long",
    }
    many = "vms:\n" + "  - {}\n" * MAX_PROBLEMS
    error = error_of(tmp_path, many)
    assert len(error.problems) == MAX_PROBLEMS + 1
    assert error.problems[-1] == ("(file)", f"{2 * MAX_PROBLEMS} more problems (only the first "
                                            f"{MAX_PROBLEMS} are listed)")


def test_pure_python_parser_reads_alike(tmp_path, monkeypatch):
    """Without libyaml, PyYAML's own scanner and parser give the same documents and problems."""
    loader = safe_yaml._loader_class(libyaml=False)
    examples = Path(__file__).resolve().parents[3] / "examples" / "rftest2"
    texts = [(examples / name).read_text() for name in ("routeflow.yaml", "topology.yaml")]
    texts += [LAUGHS + "x: *l9\n", "a: 1\na: 2\nb: !!int zz\n", f"x: {nested(MAX_DEPTH)}", "x: " + "1" * 5000]
    for text in texts:
        ours = loader(text)
        value = ours.get_single_data()
        assert YamlDocument(value, tuple(ours.problems)) == parse_yaml(text)
    # PyYAML's scanner is quadratic in the flow depth: it is stopped as libyaml's is.
    monkeypatch.setattr(safe_yaml, "_StrictLoader", loader)
    (tmp_path / "x.yaml").write_text(f"x: {nested(5000)}")
    start = time.process_time()
    with pytest.raises(ConfigError, match=f"x.yaml: line 1: nested deeper than {MAX_DEPTH} levels"):
        safe_yaml.read_yaml(tmp_path / "x.yaml")
    assert time.process_time() - start < 1  # CPU seconds: no expansion, whatever else the machine runs
