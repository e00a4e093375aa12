"""Legacy routers (routers routeflow does not control) next to routeflow's, on the real stack.

examples/legacy: an FRR router L1 and a BIRD router L2, each on a switch
port, form OSPF adjacencies with the VMs mirroring those switches, across the
physical switches, and the hosts behind them reach the hosts behind
routeflow's switches (and each other) through flows.
examples/ebgp and ebgp-peer-initiates: an external FRR router (AS 65001) peers
over eBGP with a VM (AS 65000) across a switch port; its prefixes become flows
on every switch of the path and leave no flow behind when withdrawn. Each
example opens the session from a different side.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from routeflow.harness import Stack, captured, ping, running, wait_for
from routeflow.lab import network
from routeflow.lab.network import ROUTER_RUN_ROOT
from routeflow.lab.topology import load_topology, parse_topology
from routeflow.vnet import VnetError, links
from routeflow.vnet.bird import birdc
from routeflow.vnet.frr import vtysh

pytestmark = pytest.mark.integration



def _legacy_vtysh(router: str, command: str | list[str]) -> str:
    return vtysh(router, command, ROUTER_RUN_ROOT)


def _ospf_neighbours(router: str) -> dict[str, str]:
    """Neighbour router id -> state (``Full/-``), from the legacy router's FRR."""
    document = json.loads(_legacy_vtysh(router, "show ip ospf neighbor json"))
    return {rid: entries[0]["state"] for rid, entries in document["neighbors"].items()}


def _wired(stack: Stack) -> dict[tuple[str, str], str]:
    return {(vm["name"], i["name"]): i["virtual_link"] for vm in stack.status(detail=False)["vms"]
            for i in vm["interfaces"] if i["virtual_link"]}


@pytest.fixture(scope="class")
def legacy(tmp_path_factory):
    with running("legacy", tmp_path_factory.mktemp("legacy"), Stack.all_pairs_ok) as stack:
        yield stack


class TestLegacyOspf:
    """examples/legacy (one Stack for the class: it is removed before the next class starts)."""

    def test_legacy_router_is_full_neighbour_of_the_vm(self, legacy):
        states = _ospf_neighbours("L1")
        assert list(states) == ["10.255.0.2"] and states["10.255.0.2"].startswith("Full"), states
        # rB learnt h9's subnet from L1, and L1 h1's from rB (through rA).
        vm = next(v for v in legacy.status()["vms"] if v["name"] == "rB")
        assert any(r["prefix"] == "172.31.9.0/24" for r in vm["routes"])
        assert "172.31.1.0/24" in _legacy_vtysh("L1", "show ip route ospf")


    def test_only_legacy_facing_ports_carry_routing_messages(self, legacy):
        # rA and rB (routing_plane: virtual) are wired across the RFVS where
        # discovery found the A-B link; the legacy routers know no discovery,
        # so their links stay physical.
        wait_for(lambda: _wired(legacy) == {("rA", "eth3"): "rB:eth2", ("rB", "eth2"): "rA:eth3"}, 15, 0.2)
        assert not captured("sA-p3", "ip proto 89")
        assert len(captured("sA-p6", "ip proto 89")) >= 2
        legacy.wait_verify_clean()

    def test_bird_legacy_router_is_full_neighbour_of_the_vm(self, legacy):
        neighbours = birdc("L2", "show ospf neighbors", ROUTER_RUN_ROOT)
        assert re.search(r"^10\.255\.0\.1\s+\d+\s+Full", neighbours, re.M), neighbours
        assert "172.31.9.0/24" in birdc("L2", "show route", ROUTER_RUN_ROOT)


    def test_pings_both_ways_through_flows(self, legacy):
        before = legacy.packet_ins().get("icmp", 0)
        for src, dst in (("h9", "172.31.1.100"), ("h1", "172.31.9.100"), ("h9", "172.31.2.100"),
                         ("h2", "172.31.9.100"), ("h8", "172.31.9.100"), ("h9", "172.31.8.100"),
                         ("h8", "172.31.2.100")):
            result = ping(src, dst, count=3, interval=0.05)
            assert result.ok, (src, dst, result)
        assert legacy.packet_ins().get("icmp", 0) == before
        # The flow towards h9's subnet on sA leads to sB, and on sB out of L1's port.
        assert any("172.31.9.0/24" in f and "output:3" in f for f in legacy.flows("0x1"))
        assert any("172.31.9.0/24" in f and "output:6" in f for f in legacy.flows("0x2"))
        assert any("172.31.8.0/24" in f and "output:6" in f for f in legacy.flows("0x1"))
        legacy.wait_verify_clean()

    def test_cut_to_the_legacy_router_withdraws_its_routes_and_restores(self, legacy):
        state = legacy.lab_state
        network.set_link("B-L1", "down", state_path=state)
        try:
            # The switch port going down takes rB's eth6 down at once: L1's routes go
            # from every switch, with nothing stale.
            wait_for(lambda: not any("172.31.9.0/24" in f for dp in ("0x1", "0x2") for f in legacy.flows(dp)),
                     15, 0.2)
            legacy.wait_verify_clean()
            assert ping("h1", "172.31.2.100").ok
        finally:
            network.set_link("B-L1", "up", state_path=state)
        wait_for(lambda: _ospf_neighbours("L1").get("10.255.0.2", "").startswith("Full"), 30, 0.5)
        wait_for(lambda: ping("h9", "172.31.1.100", timeout=0.5).ok, 30, 0.5)
        legacy.wait_verify_clean()


# --- eBGP at the edge: examples/ebgp (the VM opens the session) and
# --- examples/ebgp-peer-initiates (the external router opens it) ----------

ANNOUNCED = ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "172.31.9.0/24")
WITHDRAWN = "203.0.113.0/24"
_PORTS = re.compile(r"Local port: (\d+).*?Foreign port: (\d+)", re.S)


@pytest.fixture(scope="class", params=["ebgp", "ebgp-peer-initiates"])
def ebgp(request, tmp_path_factory):
    ready = functools.partial(_flows_everywhere, prefixes=ANNOUNCED)
    with running(request.param, tmp_path_factory.mktemp(request.param), ready) as stack:
        yield request.param, stack


def _flows_everywhere(stack: Stack, prefixes: tuple[str, ...]) -> bool:
    """Every prefix has its flow on sB (out of E1's port 6) and on sA (towards sB, port 3)."""
    flows_b, flows_a = stack.flows("0x2"), stack.flows("0x1")
    return all(any(f"ipv4_dst={p}" in f and "output:6" in f for f in flows_b)
               and any(f"ipv4_dst={p}" in f and "output:3" in f for f in flows_a) for p in prefixes)


def _no_flow_anywhere(stack: Stack, prefix: str) -> bool:
    return not any(prefix in f for dp in ("0x1", "0x2") for f in stack.flows(dp))


def _bgp_session(router: str) -> tuple[str, int, int]:
    """The legacy router's session with rB: (state, local TCP port, foreign TCP port)."""
    text = _legacy_vtysh(router, "show bgp neighbors 10.0.29.2")
    state = re.search(r"BGP state = (\w+)", text)
    ports = _PORTS.search(text)
    assert state is not None, text
    return state[1], int(ports[1]) if ports else 0, int(ports[2]) if ports else 0


class TestEbgp:
    """examples/ebgp and ebgp-peer-initiates, one Stack at a time."""

    def test_ebgp_session_established_in_the_configured_direction(self, ebgp):
        name, _ = ebgp
        state, local, foreign = _bgp_session("E1")
        assert state == "Established"
        if name == "ebgp":  # rB (the VM) connected to E1's port 179
            assert local == 179 and foreign != 179, (local, foreign)
        else:  # E1 connected to rB's port 179
            assert foreign == 179 and local != 179, (local, foreign)


    def test_ebgp_prefixes_are_flows_on_every_switch_of_the_path(self, ebgp):
        _, stack = ebgp
        assert _flows_everywhere(stack, ANNOUNCED)
        rb = next(v for v in stack.status()["vms"] if v["name"] == "rB")
        assert {r["prefix"]: r["proto"] for r in rb["routes"] if r["prefix"] in ANNOUNCED} == dict.fromkeys(
            ANNOUNCED, "bgp")
        # h9 (behind E1) and h1 (behind sA) reach each other across both switches.
        assert ping("h1", "172.31.9.100", count=3, interval=0.05).ok
        assert ping("h9", "172.31.1.100", count=3, interval=0.05).ok
        stack.wait_verify_clean()


    def test_ebgp_over_ipv6_prefix_becomes_a_flow_and_goes_with_its_withdrawal(self, ebgp):
        _, stack = ebgp
        v6 = "2001:db8:100::/48"

        def on_sb() -> bool:
            return any(f"ipv6_dst={v6}" in f and "output:6" in f for f in stack.flows("0x2"))

        wait_for(on_sb, 30, 0.2)
        rb = next(v for v in stack.status()["vms"] if v["name"] == "rB")
        assert [r["proto"] for r in rb["routes"] if r["prefix"] == v6] == ["bgp"]
        # h2 (behind routeflow's sB) and h9 (behind the legacy E1) over IPv6, through flows.
        # The first packets of each direction may reach rB's VM while it resolves a
        # neighbour (E1's link-local next hop, or h2 if its entry aged out), as for
        # IPv4; after that both directions run on flows alone.
        wait_for(lambda: ping("h2", "2001:db8:9::100", timeout=0.5).ok, 30, 0.5)
        wait_for(lambda: ping("h9", "2001:db8:2::100", timeout=0.5).ok, 30, 0.5)
        wait_for(lambda: any("ipv6_dst=2001:db8:2::100" in f for f in stack.flows("0x2")), 10, 0.2)
        before = stack.packet_ins().get("icmpv6", 0)
        assert ping("h9", "2001:db8:2::100", count=3, interval=0.05).ok
        assert ping("h2", "2001:db8:9::100", count=3, interval=0.05).ok
        assert stack.packet_ins().get("icmpv6", 0) == before  # echoes in flows; ND counts as "nd"
        flows = stack.flows("0x2")
        assert any("ipv6_dst=2001:db8:9::/64" in f and "output:6" in f for f in flows)
        assert any("ipv6_dst=2001:db8:2::100" in f and "output:1" in f for f in flows)
        bgp = ["configure terminal", "router bgp 65001", "address-family ipv6 unicast"]
        _legacy_vtysh("E1", [*bgp, f"no network {v6}"])
        try:
            wait_for(lambda: not on_sb(), 30, 0.2)
            stack.wait_verify_clean()
        finally:
            _legacy_vtysh("E1", [*bgp, f"network {v6}"])
        wait_for(on_sb, 30, 0.2)
        stack.wait_verify_clean()

    def test_ebgp_withdrawal_removes_its_flows_everywhere(self, ebgp):
        _, stack = ebgp
        bgp = ["configure terminal", "router bgp 65001", "address-family ipv4 unicast"]
        _legacy_vtysh("E1", [*bgp, f"no network {WITHDRAWN}"])
        try:
            wait_for(lambda: _no_flow_anywhere(stack, WITHDRAWN), 30, 0.2)
            stack.wait_verify_clean()
            assert _flows_everywhere(stack, tuple(p for p in ANNOUNCED if p != WITHDRAWN))
        finally:
            _legacy_vtysh("E1", [*bgp, f"network {WITHDRAWN}"])
        wait_for(lambda: _flows_everywhere(stack, ANNOUNCED), 30, 0.2)
        stack.wait_verify_clean()


    def test_garbage_to_the_vms_bgp_port_disturbs_nothing(self, ebgp):
        # From E1's namespace: a TCP connection to rB's BGP port carrying junk
        # (it crosses the switch to the VM like any BGP packet).
        sender = (
            "import socket\n"
            "for _ in range(5):\n"
            "    s = socket.create_connection(('10.0.29.2', 179), timeout=3)\n"
            "    s.sendall(b'\\xff' * 16 + b'\\x00\\x13\\x09' + b'garbage' * 50)\n"
            "    s.settimeout(3)\n"
            "    try:\n"
            "        s.recv(4096)\n"
            "    except OSError:\n"
            "        pass\n"
            "    s.close()\n"
        )
        subprocess.run(["ip", "netns", "exec", "E1", sys.executable, "-c", sender], check=True, timeout=60)
        _, stack = ebgp
        assert _bgp_session("E1")[0] == "Established"
        assert _flows_everywhere(stack, ANNOUNCED)
        stack.wait_verify_clean()

    def test_flapping_session_leaves_no_stale_or_missing_flow(self, ebgp):
        _, stack = ebgp
        bgp = ["configure terminal", "router bgp 65001"]
        for _ in range(3):
            _legacy_vtysh("E1", [*bgp, "neighbor 10.0.29.2 shutdown"])
            time.sleep(0.3)
            _legacy_vtysh("E1", [*bgp, "no neighbor 10.0.29.2 shutdown"])
            time.sleep(0.3)
        _legacy_vtysh("E1", [*bgp, "neighbor 10.0.29.2 shutdown"])
        try:
            wait_for(lambda: all(_no_flow_anywhere(stack, p) for p in ANNOUNCED), 30, 0.2)
            stack.wait_verify_clean()
        finally:
            _legacy_vtysh("E1", [*bgp, "no neighbor 10.0.29.2 shutdown"])
        wait_for(lambda: _flows_everywhere(stack, ANNOUNCED), 60, 0.5)
        stack.wait_verify_clean()


# --- the lab alone: legacy routers come and go with it -----------------------

LEGACY_TOPOLOGY = Path(__file__).resolve().parents[2] / "examples" / "legacy" / "topology.yaml"
#: Routers' run directories: FRR drops to user frr, which cannot enter pytest's tmp_path.
TEST_RUN_ROOT = Path("/run/routeflow/test-legacy")


@pytest.fixture(scope="module", autouse=True)
def _remove_test_run_root():
    yield
    shutil.rmtree(TEST_RUN_ROOT, ignore_errors=True)


def _router_pids(router: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", router], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited daemon may linger as a zombie of whoever reaps orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_lab_down_removes_legacy_routers_and_their_daemons(tmp_path):
    state = tmp_path / "lab.json"
    run_root = TEST_RUN_ROOT
    topology = load_topology(LEGACY_TOPOLOGY)
    lab = network.Lab(topology, state, run_root)
    asyncio.run(lab.start())
    try:
        daemons = {r.name: [d.name for d in r.engine_run.daemons] for r in lab.plan.routers}
        assert daemons == {"L1": ["zebra", "ospfd"], "L2": ["bird"]}
        pids = {name: _router_pids(name) for name in daemons}
        assert len(pids["L1"]) == 2 and len(pids["L2"]) == 1, pids
        assert "L1" in vtysh("L1", "show running-config", run_root)
        assert "ospf1" in birdc("L2", "show protocols", run_root)
        # A host behind a router reaches it over their namespace-to-namespace veth.
        assert ping("h9", "172.31.9.1").ok and ping("h8", "172.31.8.1").ok
    finally:
        network.lab_down(state)
    assert not any(links.netns_exists(n) for n in ("L1", "L2", "h8", "h9"))
    assert not [pid for pids_of in pids.values() for pid in pids_of if _alive(pid)]
    assert not (run_root / "L1").exists() and not state.exists()


def test_failed_router_engine_removes_the_whole_lab(tmp_path):
    state = tmp_path / "lab.json"
    document = yaml.safe_load(LEGACY_TOPOLOGY.read_text())
    document["routers"][1]["engine_config"] = "this is not bird.conf\n"
    topology = parse_topology(document, "broken.yaml")
    with pytest.raises(VnetError, match="router L2: bird did not start"):
        asyncio.run(network.Lab(topology, state, TEST_RUN_ROOT).start())
    assert not any(links.netns_exists(n) for n in ("L1", "L2", "h1", "h9"))
    assert "sA" not in subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split()
    assert not state.exists()
