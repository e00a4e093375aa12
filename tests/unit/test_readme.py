"""The README says what the examples and the code do: its config excerpt is rftest2's, its
examples table lists every example, its route walk-through is the flow the compiler makes,
the commands it suggests are installed, and its status columns are the ones printed."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from routeflow.cli import render
from routeflow.config.loader import load_config
from routeflow.flows.compiler import compile_datapath
from routeflow.lab.topology import load_topology
from routeflow.model import Fib, Interface, Neighbour, NextHop, PortDesc, Route, format_flow
from routeflow.operator_client import OperatorClient
from routeflow.server.nib import Nib
from routeflow.server.status import status_document

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
EXAMPLES = ROOT / "examples"


def _section(title: str) -> str:
    """The text of the README section headed ``title`` (up to the next heading of its level or above)."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", README, re.M)
    assert match, f"README has no section {title!r}"
    level = len(match.group(1))
    rest = README[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def _raw_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_config_excerpt_is_rftest2s_first_vm():
    block = re.search(r"```yaml\n(.*?)```", _section("Configuration"), re.S)
    assert block, "no yaml block under Configuration"
    excerpt = yaml.safe_load(block.group(1))
    real = _raw_yaml(EXAMPLES / "rftest2" / "routeflow.yaml")
    assert excerpt["rfvs"] == real["rfvs"]
    (shown,) = excerpt["vms"]
    vm = real["vms"][0]
    assert {k: v for k, v in shown.items() if k != "engine_config"} == \
        {k: v for k, v in vm.items() if k != "engine_config"}
    # The engine config is cut down, never changed: its lines are the real one's, in order.
    real_lines = iter(vm["engine_config"].splitlines())
    for line in shown["engine_config"].splitlines():
        assert any(line == candidate for candidate in real_lines), f"not in rA's engine_config, in order: {line!r}"


def test_examples_table_lists_every_example():
    table = _section("Examples")
    listed = set(re.findall(r"`([\w-]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()
                                                     if line.startswith("| `"))))
    examples = {p.name for p in EXAMPLES.iterdir() if (p / "routeflow.yaml").is_file()}
    assert listed == examples


def _shape(example: str) -> list:
    config = load_config(EXAMPLES / example / "routeflow.yaml")
    return [(vm.name, vm.dpid, vm.trunk, vm.loopback, vm.routing_plane, vm.interfaces) for vm in config.vms]


@pytest.mark.parametrize(("example", "engines"), [
    ("rftest2-bird", {"rA": "bird", "rB": "bird", "rC": "bird", "rD": "bird"}),
    ("rftest2-mixed", {"rA": "frr", "rB": "bird", "rC": "bird", "rD": "frr"}),
])
def test_rftest2_variants_are_the_same_network(example, engines):
    """README and comments: "the same" switches, hosts, NICs, addresses, MACs and trunks as rftest2."""
    assert _shape(example) == _shape("rftest2")
    def network(name: str):
        topology = load_topology(EXAMPLES / name / "topology.yaml")
        return topology.switches, topology.hosts, topology.links, topology.routers

    assert network(example) == network("rftest2")
    assert {vm.name: vm.engine for vm in load_config(EXAMPLES / example / "routeflow.yaml").vms} == engines


def test_route_walk_through_is_the_compilers_flow():
    """rA reaches h4's subnet over the A-D diagonal: eth5, rD's eth2 as next hop."""
    config = load_config(EXAMPLES / "rftest2" / "routeflow.yaml")
    ra, rd = config.vm("rA"), config.vm("rD")
    gateway_nic = rd.interface("eth2")
    gateway = gateway_nic.addresses[0].split("/")[0]
    assert ra.interface("eth5").addresses[0].startswith("10.0.14.") and gateway == "10.0.14.4"
    assert f"`172.31.4.0/24 via {gateway} dev eth5`" in README
    fib = Fib(interfaces=tuple(Interface(i.name, i.mac, True, i.addresses) for i in ra.interfaces),
              routes=(Route("172.31.4.0/24", (NextHop("eth5", gateway),), proto="ospf"),),
              neighbours=(Neighbour("eth5", gateway, gateway_nic.mac),))
    ports = {p: PortDesc(p, f"sA-p{p}", "02:00:00:00:00:01", True) for p in [i.port for i in ra.interfaces] + [100]}
    flows = [format_flow(f) for f in compile_datapath(ra, fib, ports).table.flows.values()]
    (flow,) = [f for f in flows if "ipv4_dst=172.31.4.0/24" in f]
    assert flow in README, flow


def test_suggested_commands_are_installed_by_the_setup():
    setup = (ROOT / "scripts" / "setup-system.sh").read_text()
    packages = re.search(r"^PACKAGES=\((.*)\)", setup, re.M).group(1).split()
    for command, package in [("traceroute", "traceroute"), ("tcpdump", "tcpdump"), ("ping", "iputils-ping")]:
        if re.search(rf"\b{command} ", README):
            assert package in packages, f"the README suggests {command}: scripts/setup-system.sh must install {package}"


def _status_headers(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The column names of each table ``routeflow status`` prints."""
    config = load_config(EXAMPLES / "rftest2" / "routeflow.yaml")
    doc = status_document(Nib(config), detail=False)
    doc["server"] = {"listeners": [], "auth_failures": 0}
    monkeypatch.setattr(OperatorClient, "status", lambda *args, **kwargs: doc)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a status problem is reported there
    out = io.StringIO()
    with redirect_stdout(out):
        render.status("unix:/nonexistent", as_json=False, flows=False, routes=False)
    headers = []
    for line in out.getvalue().splitlines():
        if line and line == line.upper() and re.match(r"[A-Z]", line) and not line.startswith("CONTROLLER"):
            headers.append(re.split(r"\s{2,}", line.strip()))
    return headers


def test_status_columns_are_the_ones_documented(monkeypatch):
    documented = set()
    for cell in re.findall(r"^\| (`[^|]+) \|", _section("Reading `routeflow status`"), re.M):
        documented.update(re.findall(r"`([A-Z][A-Z -]*)`", cell))
    printed = {column for header in _status_headers(monkeypatch) for column in header}
    assert printed == documented, (f"printed, not documented: {sorted(printed - documented)}; "
                                   f"documented, not printed: {sorted(documented - printed)}")


def test_links_within_the_readme_lead_to_headings():
    """GitHub's anchors: the heading lowercased, punctuation but '-' and '_' dropped, spaces as '-'."""
    anchors = {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
               for heading in re.findall(r"^#+ (.+)$", README, re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links <= anchors, sorted(links - anchors)
