"""The lab builder on the real stack: Open vSwitch bridges, namespaces, veths.

Builds ``examples/rftest2/topology.yaml`` (switches sA..sD, hosts h1..h4) and
checks what exists, forwards frames through hand-installed flows (there is no
controller here), cuts and restores a link, and that every way down (normal,
from another process, a failed bring-up) leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.processes import output

from routeflow.config.schema import trunk_patch_names
from routeflow.harness import ping, wait_for
from routeflow.lab import network
from routeflow.lab.topology import Topology, load_topology
from routeflow.vnet import links, ovs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ovs_running")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rftest2" / "topology.yaml"
TOPOLOGY = load_topology(EXAMPLE)


def _lab_objects(topo: Topology) -> list[str]:
    """The lab's namespaces, bridges and root veth ends that exist now."""
    found = [f"netns {h.name}" for h in topo.hosts if links.netns_exists(h.name)]
    bridges = set(output("ovs-vsctl", "list-br").split())
    found += [f"bridge {s.name}" for s in topo.switches if s.name in bridges]
    ports = [s.port_ifname(p) for s in topo.switches for p in topo.ports(s.name)]
    found += [f"link {n}" for n in asyncio.run(links.existing_links(ports))]
    return found


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Path]:
    """rftest2 up, recorded in a state file; always removed, and checked removed."""
    in_use = _lab_objects(TOPOLOGY)
    if in_use:
        pytest.fail(f"rftest2's names are in use by something else on this machine: {in_use}")
    state = tmp_path / "lab.json"
    try:
        network.lab_up(EXAMPLE, state_path=state)
        yield state
    finally:
        network.lab_down(state_path=state)
    assert _lab_objects(TOPOLOGY) == []
    assert not state.exists()


def _vsctl_get(table: str, record: str, column: str) -> str:
    return output("ovs-vsctl", "get", table, record, column).strip()


def test_switches_hosts_and_cables_exist(lab: Path) -> None:
    for switch in TOPOLOGY.switches:
        assert _vsctl_get("Bridge", switch.name, "datapath_type") == "netdev"
        assert _vsctl_get("Bridge", switch.name, "fail_mode") == "secure"
        assert _vsctl_get("Bridge", switch.name, "protocols") == "[OpenFlow13]"
        assert _vsctl_get("Bridge", switch.name, "other-config:datapath-id") == f'"{switch.dpid:016x}"'
        assert output("ovs-vsctl", "get-controller", switch.name).split() == list(switch.controller)
        assert _vsctl_get("Controller", switch.name, "max_backoff") == "1000"
        ports = asyncio.run(ovs.list_ports(switch.name))
        # The trunk to the RFVS is a patch port whose peer the VMs' RFVS holds.
        trunk, peer = trunk_patch_names(switch.dpid)
        assert sorted(ports) == sorted([trunk] + [switch.port_ifname(p) for p in TOPOLOGY.ports(switch.name)])
        assert (_vsctl_get("Interface", trunk, "type"), _vsctl_get("Interface", trunk, "options:peer"),
                _vsctl_get("Interface", trunk, "ofport")) == ("patch", peer, str(switch.trunk))
        for port in TOPOLOGY.ports(switch.name):
            assert _vsctl_get("Interface", switch.port_ifname(port), "ofport") == str(port)
            assert asyncio.run(links.link_is_up(switch.port_ifname(port)))
    for host in TOPOLOGY.hosts:
        addresses = json.loads(network.host_exec(host.name, ["ip", "-j", "addr", "show"], check=True).stdout)
        by_name = {a["ifname"]: a for a in addresses}
        assert set(by_name) == {"lo", "eth0"}
        assert "UP" in by_name["lo"]["flags"] and "UP" in by_name["eth0"]["flags"]
        assert asyncio.run(links.addresses(host.name, "eth0")) == list(host.addresses)
        routes = json.loads(network.host_exec(host.name, ["ip", "-j", "route", "show", "default"]).stdout)
        assert [r["gateway"] for r in routes] == [str(host.gateway)]
    state = json.loads(lab.read_text())
    assert state["meta"]["topology"] == str(EXAMPLE)
    assert {r["kind"] for r in state["resources"]} == {"netns", "link", "bridge"}


def _add_flows(bridge: str, *flows: str) -> None:
    for flow in flows:
        output("ovs-ofctl", "-O", "OpenFlow13", "add-flow", bridge, flow)


def _patch_h1_to_h2() -> None:
    """Cable h1 (sA:1) to h2 (sB:1) over A-B (sA:3 - sB:2) with flows, on a shared subnet."""
    _add_flows("sA", "in_port=1,actions=output:3", "in_port=3,actions=output:1")
    _add_flows("sB", "in_port=2,actions=output:1", "in_port=1,actions=output:2")
    network.host_exec("h1", ["ip", "addr", "add", "10.99.0.1/24", "dev", "eth0"], check=True)
    network.host_exec("h2", ["ip", "addr", "add", "10.99.0.2/24", "dev", "eth0"], check=True)


def _ping(host: str, address: str, count: int = 1) -> bool:
    return ping(host, address, count).ok


def test_frames_cross_switches_on_the_numbered_ports(lab: Path) -> None:
    _patch_h1_to_h2()
    assert _ping("h1", "10.99.0.2", count=3)
    # TCP too: it fails if TX checksum offload was left on in the hosts.
    server = subprocess.Popen(links.netns_argv("h2", [
        sys.executable, "-c",
        "import socket; s = socket.create_server(('10.99.0.2', 5001)); c, _ = s.accept(); "
        "n = 0\nwhile (d := c.recv(65536)): n += len(d)\nprint(n)"]), stdout=subprocess.PIPE, text=True)
    try:
        client = network.host_exec("h1", [
            sys.executable, "-c",
            "import socket, time\nfor _ in range(50):\n    try:\n"
            "        s = socket.create_connection(('10.99.0.2', 5001), timeout=2); break\n"
            "    except OSError: time.sleep(0.1)\n"
            "s.sendall(b'x' * 200000); s.close()"], timeout=30)
        assert client.returncode == 0, client.stderr
        out, _ = server.communicate(timeout=10)
        assert out.strip() == "200000"
    finally:
        server.kill()
        server.wait()


def test_ipv6_hosts_and_quiet_switch_ports(lab: Path) -> None:
    # Switch ports are plumbing: no IPv6 on them, so no autoconfiguration chatter into the network.
    for switch in TOPOLOGY.switches:
        for port in TOPOLOGY.ports(switch.name):
            name = switch.port_ifname(port)
            assert Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").read_text().strip() == "1", name
            assert "inet6" not in output("ip", "-6", "addr", "show", "dev", name)
    # Hosts: a link-local address at once (no DAD), kept across a link cut.
    shown = network.host_exec("h1", ["ip", "-6", "-j", "addr", "show", "dev", "eth0"], check=True).stdout
    local = [a for a in json.loads(shown)[0]["addr_info"] if a["scope"] == "link"]
    assert local and not local[0].get("tentative")
    _add_flows("sA", "in_port=1,actions=output:3", "in_port=3,actions=output:1")
    _add_flows("sB", "in_port=2,actions=output:1", "in_port=1,actions=output:2")
    network.host_exec("h1", ["ip", "addr", "add", "2001:db8:99::1/64", "dev", "eth0"], check=True)
    network.host_exec("h2", ["ip", "addr", "add", "2001:db8:99::2/64", "dev", "eth0"], check=True)
    assert _ping("h1", "2001:db8:99::2", count=3)
    assert _ping("h2", local[0]["local"] + "%eth0")  # neighbour discovery to a link-local address
    network.set_link("h1", "down", state_path=lab)
    network.set_link("h1", "up", state_path=lab)
    assert "2001:db8:99::1/64" in network.host_exec("h1", ["ip", "-6", "addr"], check=True).stdout
    wait_for(lambda: _ping("h1", "2001:db8:99::2"), 5, 0.1)


def test_cut_and_restore_a_link(lab: Path) -> None:
    _patch_h1_to_h2()
    assert _ping("h1", "10.99.0.2")
    link = network.set_link("sB:2", "down", state_path=lab)
    assert link.name == "A-B"
    assert not asyncio.run(links.link_is_up("sA-p3")) and not asyncio.run(links.link_is_up("sB-p2"))
    # OVS notices carrier changes asynchronously.
    wait_for(lambda: _vsctl_get("Interface", "sA-p3", "link_state") == "down", 5, 0.1)
    assert not _ping("h1", "10.99.0.2")
    network.set_link("A-B", "up", state_path=lab)
    wait_for(lambda: _vsctl_get("Interface", "sA-p3", "link_state") == "up", 5, 0.1)
    assert _ping("h1", "10.99.0.2", count=2)
    # A host's link: its eth0 goes down with the switch port.
    network.set_link("h3", "down", state_path=lab)
    assert not asyncio.run(links.link_is_up("eth0", "h3")) and not asyncio.run(links.link_is_up("sC-p1"))
    network.set_link("h3", "up", state_path=lab)
    assert asyncio.run(links.link_is_up("eth0", "h3"))


def test_silent_link_drops_everything_with_carrier_and_port_state_up(lab: Path) -> None:
    _patch_h1_to_h2()
    assert _ping("h1", "10.99.0.2")
    done = subprocess.run([sys.executable, "-m", "routeflow", "lab", "link", "A-B", "silent", "--state", str(lab)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "link A-B is silent\n"), done.stderr
    try:
        for switch, port in (("sA", "sA-p3"), ("sB", "sB-p2")):
            desc = output("ovs-ofctl", "-O", "OpenFlow13", "show", switch)
            line = next(x for x in desc.splitlines() if f"({port})" in x)
            config = desc.split(line, 1)[1].split("state:", 1)[0]
            assert "NO_RECV" in config and "NO_FWD" in config, desc
            assert _vsctl_get("Interface", port, "link_state") == "up"
        assert asyncio.run(links.link_is_up("sA-p3")) and asyncio.run(links.link_is_up("sB-p2"))
        assert not _ping("h1", "10.99.0.2")
    finally:
        network.set_link("A-B", "up", state_path=lab)
    # Restored: traffic passes again (h1's ARP entry for h2 failed meanwhile and is learnt anew).
    wait_for(lambda: _ping("h1", "10.99.0.2"), 10, 0.1)
    with pytest.raises(network.LabError, match="switch ports at both ends, and h1 is not a switch"):
        network.set_link("h1", "silent", state_path=lab)
    with pytest.raises(network.LabError, match="'sideways' is not one of up, down, silent"):
        network.set_link("A-B", "sideways", state_path=lab)


def test_lab_down_from_another_process(lab: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import sys; from routeflow.lab.network import lab_down; "
                           "sys.exit(0 if lab_down(state_path=sys.argv[1]) else 1)", str(lab)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _lab_objects(TOPOLOGY) == []
    assert not lab.exists()
    assert network.lab_down(state_path=lab) is False
    network.lab_up(EXAMPLE, state_path=lab)  # for the fixture to take down again


def test_second_lab_up_is_refused(lab: Path, tmp_path: Path) -> None:
    with pytest.raises(network.LabError, match="already up"):
        network.lab_up(EXAMPLE, state_path=lab)
    with pytest.raises(network.LabError, match="already in use: namespace h1"):
        network.lab_up(EXAMPLE, state_path=tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()


def test_failed_bring_up_removes_what_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _lab_objects(TOPOLOGY) == []
    real_add_bridge = ovs.add_bridge

    async def failing_add_bridge(spec: ovs.BridgeSpec) -> None:
        if spec.name == "sC":
            raise ovs.OvsError("injected failure")
        await real_add_bridge(spec)

    monkeypatch.setattr(ovs, "add_bridge", failing_add_bridge)
    state = tmp_path / "lab.json"
    try:
        with pytest.raises(ovs.OvsError, match="injected"):
            network.lab_up(EXAMPLE, state_path=state)
        assert _lab_objects(TOPOLOGY) == []
        assert not state.exists()
    finally:
        network.lab_down(state_path=state)


def test_async_context_manager_without_state_file() -> None:
    async def scenario() -> None:
        async with network.Lab(TOPOLOGY, state_path=None) as lab:
            assert len(await asyncio.to_thread(_lab_objects, TOPOLOGY)) == 4 + 4 + 14
            await lab.set_link("C-A", "down")
            assert not await links.link_is_up("sC-p2")
            raise KeyError("body failed")

    try:
        with pytest.raises(KeyError, match="body failed"):
            asyncio.run(scenario())
    finally:
        assert _lab_objects(TOPOLOGY) == []
