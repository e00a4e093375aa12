"""``routeflow check`` with the real engines: BIRD's and FRR's own parsers report a broken
engine_config at its own line, and every example passes against its lab topology."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from routeflow.harness import EXAMPLES
from routeflow.vnet import bird

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not bird.BIRD.exists() or shutil.which("vtysh") is None,
                       reason="needs BIRD and FRR (make setup installs them)"),
]

CONFIG = """\
vms:
  - name: rA
    dpid: 0x1
    engine: frr
    daemons: [ospfd]
    interfaces:
      - {name: eth1, port: 1, addresses: [172.31.1.1/24]}
    engine_config: |
      router ospf
       netwrk 172.31.1.0/24 area 0
  - name: rB
    dpid: 0x2
    engine: bird
    interfaces:
      - {name: eth1, port: 1, addresses: [172.31.2.1/24]}
    engine_config: |
      router id 10.255.0.2;
      protocol device { }
      protocol kernel { ipv4 { export all; } }
"""


def check(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routeflow", "check", *argv], capture_output=True, text=True,
                          timeout=120)


def test_broken_engine_configs_are_reported_with_the_engines_messages(tmp_path):
    config = tmp_path / "routeflow.yaml"
    config.write_text(CONFIG)
    done = check(str(config))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    frr = [line for line in lines if line.startswith(f"{config}: vms[0].engine_config: ")]
    assert len(frr) == 1 and "line 2: % Unknown command: netwrk 172.31.1.0/24 area 0 (FRR " in frr[0], lines
    birds = [line for line in lines if line.startswith(f"{config}: vms[1].engine_config: ")]
    # The ';' missing after "ipv4 { export all; }", on the engine_config's third line.
    assert len(birds) == 1 and "line 3, column " in birds[0] and "syntax error" in birds[0], lines
    assert "(BIRD " in birds[0] and "routeflow-check-" not in done.stderr  # no private temporary path


def test_broken_router_configs_of_a_topology(tmp_path):
    topology = tmp_path / "topology.yaml"
    document = (EXAMPLES / "legacy" / "topology.yaml").read_text()
    topology.write_text(document.replace("ip ospf passive", "ip ospf pasive")
                        .replace("protocol device { }", "protocol device { ]"))
    done = check("--topology", str(topology), "--json")
    assert done.returncode == 2
    errors = json.loads(done.stdout)["errors"]
    assert [(e["field"], e["reason"].split(":")[0]) for e in errors] == [
        ("routers[0].engine_config", "line 7"), ("routers[1].engine_config", "line 2, column 19")], errors


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if (p / "routeflow.yaml").is_file()))
def test_every_example_passes_against_its_lab(example):
    directory = EXAMPLES / example
    done = check(str(directory / "routeflow.yaml"), "--lab", str(directory / "topology.yaml"), "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["valid"], report.get("errors")
    # Every engine config was read by its engine.
    assert not [w for w in report["warnings"] if w["reason"].startswith("not checked")], report["warnings"]
