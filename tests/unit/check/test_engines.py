"""Engine configs handed to the engine's own parser: here stand-in parsers (shell scripts), so
what is checked is the rendered file, kept private, and what the parser says, mapped back."""

from pathlib import Path

import pytest

from routeflow.check import engines
from routeflow.check.semantics import Findings
from routeflow.vnet import bird

ENGINE_CONFIG = "router id 10.0.0.1;\nprotocol device {}\nprotocol kernel { ipv4 { export all; } }\n"


@pytest.fixture(autouse=True)
def fresh_parsers():
    """What is installed is looked up once per process: each test looks again."""
    engines._parser.cache_clear()
    yield
    engines._parser.cache_clear()


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_the_rendered_config_is_parsed_in_a_private_file(tmp_path, monkeypatch):
    seen = tmp_path / "seen"
    seen.mkdir()
    parser = script(tmp_path / "parser", f"""
stat -c %a "$1" > {seen}/mode
stat -c %a "$(dirname "$1")" > {seen}/dir_mode
echo "$1" > {seen}/path
cp "$1" {seen}/conf
echo "bird: $1:6:30 syntax error, unexpected '}}', expecting ';'" >&2
exit 1
""")
    monkeypatch.setattr(engines, "_parser", lambda engine: ((str(parser),), "BIRD 2.0.12"))
    found = Findings()
    engines.check_engine_config(found, "cfg.yaml", "vms[0]", "bird", "rA", ENGINE_CONFIG, ())
    assert [str(e) for e in found.errors] == [
        "cfg.yaml: vms[0].engine_config: line 3, column 30: syntax error, unexpected '}', expecting ';' "
        "(BIRD 2.0.12)"]
    assert not found.warnings
    assert (seen / "mode").read_text().strip() == "600" and (seen / "dir_mode").read_text().strip() == "700"
    conf = (seen / "conf").read_text()
    assert conf.startswith("# bird.conf of rA") and conf.endswith(ENGINE_CONFIG)
    assert not Path((seen / "path").read_text().strip()).exists()  # gone with its passwords


def test_a_config_the_parser_accepts_has_no_findings(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "_parser", lambda engine: ((str(script(tmp_path / "ok", "exit 0\n")),), "FRR"))
    found = Findings()
    engines.check_engine_config(found, "cfg.yaml", "vms[0]", "frr", "rA", "router ospf\n", ("ospfd",))
    engines.check_engine_config(found, "cfg.yaml", "vms[1]", "none", "rB", "", ())
    assert found == Findings()


def test_an_engine_not_installed_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(bird, "BIRD", tmp_path / "bird")
    monkeypatch.setattr(engines.shutil, "which", lambda name: None)
    found = Findings()
    engines.check_engine_config(found, "cfg.yaml", "vms[0]", "bird", "rA", ENGINE_CONFIG, ())
    engines.check_engine_config(found, "topo.yaml", "routers[1]", "frr", "L1", "router ospf\n", ("ospfd",))
    assert not found.errors
    assert [str(w) for w in found.warnings] == [
        f"cfg.yaml: vms[0].engine_config: not checked: BIRD is not installed ({tmp_path / 'bird'})",
        "topo.yaml: routers[1].engine_config: not checked: FRR is not installed (no vtysh)",
    ]


def test_bird_1_is_not_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(bird, "BIRD", script(tmp_path / "bird", "echo 'BIRD version 1.6.8' >&2\nexit 0\n"))
    found = Findings()
    engines.check_engine_config(found, "cfg.yaml", "vms[0]", "bird", "rA", ENGINE_CONFIG, ())
    assert [w.reason for w in found.warnings] == [
        "not checked: the BIRD installed is 1.6.8, and routeflow runs BIRD 2 or later"]


def test_bird_2_and_later_are_asked_with_their_version(tmp_path, monkeypatch):
    fake = script(tmp_path / "bird", "echo 'BIRD version 3.0.1' >&2\n")
    monkeypatch.setattr(bird, "BIRD", fake)
    assert engines._parser("bird") == ((str(fake), "-p", "-c"), "BIRD 3.0.1")
