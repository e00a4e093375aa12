"""The RF-Client process in a network namespace against a fake RF-Server.

Namespace ``tcl-vm`` has ``eth1`` (a veth whose far end ``tcl-p1`` stays in
the root namespace, where mapping packets are captured) and ``eth2`` (a veth
to ``eth2p`` inside the namespace), dual stack. The test plays the server on
a unix socket, mirrors the client's snapshot and deltas as a server would,
and compares that mirror with what ``ip -j`` shows in the namespace, for
IPv4 and IPv6 alike.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakeserver import FakeServer
from tests.fibmirror import FibMirror
from tests.processes import sh, stop_process

from routeflow.harness import wait_for
from routeflow.model import Fib, NextHop, Route
from routeflow.protocol import mapping
from routeflow.protocol.messages import (
    FibAudit,
    FibDelta,
    FibSnapshot,
    Goodbye,
    LinkState,
    Message,
    PortMapped,
    SnapshotRequest,
)

pytestmark = pytest.mark.integration

NS = "tcl-vm"
ROOT_PEER = "tcl-p1"
ROUTE_TYPES = {"unicast", "blackhole", "unreachable", "prohibit"}
RESOLVED = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}


def ip(*args: str) -> str:
    return sh("ip", "-n", NS, *args).stdout


def ip_json(*args: str) -> Any:
    return json.loads(ip("-j", *args) or "[]")


@pytest.fixture(scope="module", autouse=True)
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


@pytest.fixture
def netns() -> Iterator[None]:
    sh("ip", "netns", "del", NS, check=False)  # left over by a killed run
    sh("ip", "link", "del", ROOT_PEER, check=False)
    sh("ip", "netns", "add", NS)
    try:
        # Before any NIC exists, so that they all inherit it: link-local addresses usable at once.
        sh("ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0",
           "net.ipv6.conf.all.accept_dad=0")
        sh("ip", "link", "add", ROOT_PEER, "type", "veth", "peer", "name", "eth1", "netns", NS)
        sh("ip", "link", "set", ROOT_PEER, "up")
        for command in (
            "link set lo up",
            "link add eth2 type veth peer name eth2p",
            "link set eth1 up", "link set eth2 up", "link set eth2p up",
            "addr add 10.0.1.1/24 dev eth1",
            "addr add 10.0.2.1/24 dev eth2",
            "addr add 10.255.0.1/32 dev lo",
            "route add 10.20.0.0/16 via 10.0.1.2 metric 100 proto static",
            "route add 10.20.0.0/16 via 10.0.2.2 metric 200",
            "route add 10.30.0.0/16 proto ospf nexthop via 10.0.1.2 dev eth1 nexthop via 10.0.2.2 dev eth2",
            "route add blackhole 10.40.0.0/16",
            "route add default via 10.0.1.254",
            "neigh add 10.0.1.2 lladdr 02:00:00:00:01:02 dev eth1 nud permanent",
            "neigh add 10.0.2.2 lladdr 02:00:00:00:02:02 dev eth2 nud stale",
            "neigh add 10.0.1.7 lladdr 02:00:00:00:01:07 dev eth1 nud failed",
            "addr add 2001:db8:1::1/64 dev eth1",
            "addr add 2001:db8:2::1/64 dev eth2",
            "addr add 2001:db8:ff::1/128 dev lo",
            "-6 route add 2001:db8:20::/48 via 2001:db8:1::2 metric 100 proto static",
            "-6 route add 2001:db8:20::/48 via 2001:db8:2::2 metric 200",
            "-6 route add 2001:db8:30::/48 proto ospf nexthop via 2001:db8:1::2 dev eth1 nexthop via fe80::2 dev eth2",
            "-6 route add 2001:db8:31::/48 via fe80::1 dev eth1",
            "-6 route add blackhole 2001:db8:40::/48",
            "-6 route add default via 2001:db8:1::fe",
            "neigh add 2001:db8:1::2 lladdr 02:00:00:00:01:12 dev eth1 nud reachable",
            "neigh add fe80::2 lladdr 02:00:00:00:02:12 dev eth2 nud stale router",
            "neigh add 2001:db8:1::7 lladdr 02:00:00:00:01:17 dev eth1 nud failed",
        ):  # fmt: skip
            ip(*command.split())
        yield
    finally:
        sh("ip", "netns", "del", NS, check=False)
        sh("ip", "link", "del", ROOT_PEER, check=False)
        assert NS not in sh("ip", "netns", "list").stdout


class MirroringServer(FakeServer):
    """A fake server that also mirrors the client's FIB from its snapshots and deltas."""

    def __init__(self, path: Path) -> None:
        self.mirror = FibMirror()
        self._parts: list[Fib] = []
        super().__init__(path, identities=(f"client-{NS}",))

    def on_message(self, msg: Message) -> None:
        if isinstance(msg, FibSnapshot) and msg.request_id == 0:
            # The client's whole state comes in parts of at most 10,000 routes.
            self._parts.append(msg.fib)
            if not msg.more:
                self.mirror.reset(Fib(self._parts[0].interfaces, tuple(r for p in self._parts for r in p.routes),
                                      self._parts[0].neighbours))
                self._parts = []
        elif isinstance(msg, FibDelta):
            self.mirror.apply(msg)

    def routes(self) -> dict[str, Route]:
        with self.lock:
            return dict(self.mirror.routes)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MirroringServer]:
    fake = MirroringServer(tmp_path / "server.sock")
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def agent(netns: None, server: MirroringServer, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "agent.log").open("wb")
    argv = ["ip", "netns", "exec", NS, sys.executable, "-m", "routeflow.client",
            "--vm", NS, "--server", f"unix:{server.path}", "--keys", str(server.keys), "--log-level", "DEBUG",
            "--audit-interval", "1"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: server.count(FibSnapshot) > 0, 10, 0.05)
        yield proc
    finally:
        stop_process(proc)
        log.close()


# -- an oracle independent of routeflow.client.fib: iproute2's own JSON --------------


Routes = dict[str, tuple[str, str, tuple[tuple[str, str | None], ...]]]


def _forwarding_prefix(prefix: str, entry: dict[str, Any]) -> bool:
    """What routeflow reports: not IPv6 link-local or multicast, nor the loopback's own prefixes."""
    net = ipaddress.ip_network(prefix)
    if net.version == 6 and (net.is_link_local or net.is_multicast):
        return False
    return not (net.version == 6 and entry.get("dev") == "lo" and entry.get("protocol") == "kernel"
                and entry.get("type", "unicast") == "unicast")


def kernel_routes() -> Routes:
    """Best route per prefix of the main table as ``ip -j`` shows it: (type, proto, hops).
    IPv6 ECMP next hops sorted, as the client reports them."""
    best: dict[str, tuple[int, tuple[str, str, tuple[tuple[str, str | None], ...]]]] = {}
    for family in ("-4", "-6"):
        for entry in ip_json(family, "route", "show", "table", "main"):
            kind = entry.get("type", "unicast")
            if kind not in ROUTE_TYPES:
                continue
            dst = entry["dst"]
            prefix = ("0.0.0.0/0" if family == "-4" else "::/0") if dst == "default" else str(ipaddress.ip_network(dst))
            if not _forwarding_prefix(prefix, entry):
                continue
            legs = entry.get("nexthops") or ([entry] if "dev" in entry else [])
            hops = tuple((leg["dev"], leg.get("gateway")) for leg in legs if "dead" not in leg.get("flags", ()))
            if kind != "unicast":
                hops = ()  # IPv6 reject routes point at lo
            elif family == "-6":
                hops = tuple(sorted(hops, key=lambda hop: (hop[0], hop[1] or "")))
            metric = entry.get("metric", 0)
            if prefix not in best or metric < best[prefix][0]:
                best[prefix] = (metric, (kind, entry.get("protocol", "boot"), hops))
    return {prefix: value for prefix, (_, value) in best.items()}


def mirrored_routes(server: MirroringServer) -> Routes:
    return {
        prefix: (route.type, route.proto, tuple((hop.ifname, hop.gateway) for hop in route.nexthops))
        for prefix, route in server.routes().items()
    }


def kernel_neighbours() -> set[tuple[str, str, str]]:
    """Resolved neighbours of both families with a unicast MAC (not 33:33:... multicast groups)."""
    return {
        (entry["dev"], entry["dst"], entry["lladdr"])
        for entry in ip_json("neigh", "show", "nud", "all")
        if "lladdr" in entry and RESOLVED & set(entry.get("state", ())) and not int(entry["lladdr"][:2], 16) & 1
    }


def kernel_addresses(ifname: str) -> tuple[str, ...]:
    """The addresses of ``ifname`` the router owns (not tentative), IPv4 then IPv6, numeric order."""
    shown = ip_json("addr", "show", "dev", ifname)[0]["addr_info"]
    owned = [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}") for a in shown
             if not a.get("tentative") and not a.get("dadfailed") and not ipaddress.ip_address(a["local"]).is_loopback]
    return tuple(str(a) for a in sorted(owned, key=lambda a: (a.version, a)))


def mirrored_neighbours(server: MirroringServer) -> set[tuple[str, str, str]]:
    with server.lock:
        return {(n.ifname, n.ip, n.mac) for n in server.mirror.neighbours.values()}


def mirrored_addresses(server: MirroringServer, ifname: str) -> tuple[str, ...]:
    with server.lock:
        interface = server.mirror.interfaces.get(ifname)
    return interface.addresses if interface else ()


def in_sync(server: MirroringServer) -> bool:
    return (mirrored_routes(server) == kernel_routes() and mirrored_neighbours(server) == kernel_neighbours()
            and all(mirrored_addresses(server, name) == kernel_addresses(name) for name in ("eth1", "eth2", "lo")))


# -- tests ---------------------------------------------------------------------------


def test_snapshot_matches_the_kernel(server: MirroringServer, agent: subprocess.Popen[bytes]) -> None:
    assert [(h.role, h.name) for h in server.hellos] == [("client", NS)]
    assert mirrored_routes(server) == kernel_routes()
    assert mirrored_neighbours(server) == kernel_neighbours()
    routes = server.routes()
    assert [hop.ifname for hop in routes["10.30.0.0/16"].nexthops] == ["eth1", "eth2"]
    assert routes["10.20.0.0/16"].proto == "static"
    with server.lock:
        interfaces = dict(server.mirror.interfaces)
    assert interfaces["lo"].addresses == ("10.255.0.1/32", "2001:db8:ff::1/128")
    assert interfaces["eth1"].up and interfaces["eth1"].addresses[:2] == ("10.0.1.1/24", "2001:db8:1::1/64")
    assert ipaddress.ip_interface(interfaces["eth1"].addresses[2]).is_link_local
    assert interfaces["eth1"].addresses == kernel_addresses("eth1")
    assert routes["2001:db8:30::/48"].nexthops == (NextHop("eth1", "2001:db8:1::2"), NextHop("eth2", "fe80::2"))
    assert routes["2001:db8:31::/48"].nexthops == (NextHop("eth1", "fe80::1"),)
    assert routes["2001:db8:40::/48"] == Route("2001:db8:40::/48", (), "blackhole", "boot")
    assert not [p for p in routes if p.startswith(("fe80:", "ff"))] and "2001:db8:ff::1/128" not in routes
    assert ("eth2", "fe80::2", "02:00:00:00:02:12") in mirrored_neighbours(server)  # a router entry


def test_route_changes_arrive_as_deltas(server: MirroringServer, agent: subprocess.Popen[bytes]) -> None:
    steps = [
        "route add 10.50.0.0/16 nexthop via 10.0.1.3 dev eth1 nexthop via 10.0.2.3 dev eth2",
        "route add 10.20.0.0/16 via 10.0.2.9 metric 10",  # shadows the metric 100 route
        "route del 10.20.0.0/16 metric 10",  # falls back to it
        "route del 10.20.0.0/16 metric 100",  # falls back to metric 200
        "route replace 10.50.0.0/16 via 10.0.1.3",
        "neigh add 10.0.2.5 lladdr 02:00:00:00:02:05 dev eth2 nud reachable",
        "route del 10.50.0.0/16",
        "neigh del 10.0.2.2 dev eth2",
    ]
    for command in steps:
        ip(*command.split())
        wait_for(lambda: in_sync(server), 10, 0.05)
    assert "10.50.0.0/16" not in server.routes()
    assert server.routes()["10.20.0.0/16"].nexthops[0].gateway == "10.0.2.2"
    assert server.count(FibSnapshot) == 1  # deltas only after the first snapshot


def test_ipv6_changes_arrive_as_deltas(server: MirroringServer, agent: subprocess.Popen[bytes]) -> None:
    def ecmp(prefix: str) -> tuple[NextHop, ...]:
        return server.routes()[prefix].nexthops

    steps: list[tuple[str, Callable[[], bool]]] = [
        # One message with the whole group: the appended leg and its sibling.
        ("-6 route append 2001:db8:20::/48 via 2001:db8:2::3 metric 100", lambda: len(ecmp("2001:db8:20::/48")) == 2),
        ("-6 route del 2001:db8:20::/48 via 2001:db8:2::3 metric 100", lambda: len(ecmp("2001:db8:20::/48")) == 1),
        ("-6 route add 2001:db8:50::/48 nexthop via 2001:db8:1::3 dev eth1 nexthop via fe80::3 dev eth2",
         lambda: ecmp("2001:db8:50::/48") == (NextHop("eth1", "2001:db8:1::3"), NextHop("eth2", "fe80::3"))),
        ("-6 route replace 2001:db8:50::/48 via fe80::3 dev eth2",
         lambda: ecmp("2001:db8:50::/48") == (NextHop("eth2", "fe80::3"),)),
        ("-6 route add 2001:db8:20::/48 via 2001:db8:2::9 metric 10", lambda: True),  # shadows metric 100
        ("-6 route del 2001:db8:20::/48 metric 10", lambda: True),
        ("neigh add fe80::3 lladdr 02:00:00:00:02:13 dev eth2 nud reachable", lambda: True),
        ("neigh change fe80::3 dev eth2 nud failed", lambda: True),
        ("neigh add 2001:db8:2::5 lladdr 02:00:00:00:02:15 dev eth2 nud permanent", lambda: True),
        ("neigh del 2001:db8:2::5 dev eth2", lambda: True),
        ("-6 route del 2001:db8:50::/48", lambda: "2001:db8:50::/48" not in server.routes()),
        ("addr add 2001:db8:2::100/64 dev eth2", lambda: "2001:db8:2::100/64" in mirrored_addresses(server, "eth2")),
        ("addr del 2001:db8:2::100/64 dev eth2", lambda: True),
    ]
    for command, check in steps:
        ip(*command.split())
        wait_for(lambda: in_sync(server) and check(), 10, 0.05)
    assert server.routes()["2001:db8:20::/48"].nexthops == (NextHop("eth1", "2001:db8:1::2"),)
    assert server.count(FibSnapshot) == 1


def test_next_hop_objects_and_what_the_kernel_removes_silently(
    server: MirroringServer, agent: subprocess.Popen[bytes]
) -> None:
    """Routes through next-hop objects (as FRR installs them) follow their objects;
    and what the kernel removes without an RTM_DELROUTE -- routes of a deleted object,
    of a shrunk group, of a link that lost its carrier or was deleted, of a removed
    address -- leaves the mirror too."""
    steps: list[tuple[str, Callable[[], bool]]] = [
        ("nexthop add id 1 via 10.0.1.2 dev eth1", lambda: True),
        ("nexthop add id 2 via 10.0.2.2 dev eth2", lambda: True),
        ("nexthop add id 10 group 1/2", lambda: True),
        ("route add 198.18.0.0/24 nhid 1 proto ospf", lambda: "198.18.0.0/24" in server.routes()),
        ("route add 198.18.1.0/24 nhid 10 proto bgp", lambda: len(server.routes()["198.18.1.0/24"].nexthops) == 2),
        ("-6 nexthop add id 6 via 2001:db8:1::2 dev eth1", lambda: True),
        ("-6 nexthop add id 7 via fe80::2 dev eth2", lambda: True),
        ("nexthop add id 67 group 6/7", lambda: True),
        ("-6 route add 2001:db8:99::/48 nhid 67 proto bgp", lambda: len(server.routes()["2001:db8:99::/48"].nexthops) == 2),
        ("-6 route add 2001:db8:98::/48 nhid 6", lambda: "2001:db8:98::/48" in server.routes()),
        ("nexthop replace id 1 via 10.0.1.3 dev eth1",
         lambda: server.routes()["198.18.0.0/24"].nexthops == (NextHop("eth1", "10.0.1.3"),)),
        # The group shrinks (announced), its routes change (not announced).
        ("nexthop del id 2", lambda: server.routes()["198.18.1.0/24"].nexthops == (NextHop("eth1", "10.0.1.3"),)),
        # The object goes, with the group it was last in and every route through either.
        ("nexthop del id 1", lambda: not {"198.18.0.0/24", "198.18.1.0/24"} & server.routes().keys()),
        ("nexthop del id 7", lambda: len(server.routes()["2001:db8:99::/48"].nexthops) == 1),
        ("nexthop del id 6", lambda: not {"2001:db8:98::/48", "2001:db8:99::/48"} & server.routes().keys()),
        # A link that loses its carrier loses its objects, silently.
        ("nexthop add id 3 via 10.0.2.3 dev eth2", lambda: True),
        ("route add 198.18.3.0/24 nhid 3", lambda: "198.18.3.0/24" in server.routes()),
        ("link set eth2p down", lambda: "198.18.3.0/24" not in server.routes()),
        ("link set eth2p up", lambda: True),
        # An address removed takes the routes that use it as their source.
        ("route add 198.18.4.0/24 via 10.0.1.2 src 10.0.1.1", lambda: "198.18.4.0/24" in server.routes()),
        ("addr del 10.0.1.1/24 dev eth1", lambda: "198.18.4.0/24" not in server.routes()),
        # ... and adding it back revives the multipath legs through its subnet.
        ("addr add 10.0.1.1/24 dev eth1", lambda: len(server.routes()["10.30.0.0/16"].nexthops) == 2),
        # A link deleted takes its routes, its objects' routes and (IPv4, silently) all the rest.
        ("link add eth3 type veth peer name eth3p", lambda: True),
        ("link set eth3 up", lambda: True),
        ("link set eth3p up", lambda: True),
        ("addr add 10.0.3.1/24 dev eth3", lambda: True),
        ("addr add 2001:db8:3::1/64 dev eth3", lambda: True),
        ("route add 198.18.6.0/24 via 10.0.3.2 dev eth3", lambda: "198.18.6.0/24" in server.routes()),
        ("nexthop add id 4 via 10.0.3.3 dev eth3", lambda: True),
        ("route add 198.18.7.0/24 nhid 4", lambda: "198.18.7.0/24" in server.routes()),
        ("-6 route add 2001:db8:97::/48 via 2001:db8:3::2 dev eth3", lambda: "2001:db8:97::/48" in server.routes()),
        ("link del eth3",
         lambda: not {"198.18.6.0/24", "198.18.7.0/24", "2001:db8:97::/48", "10.0.3.0/24"} & server.routes().keys()),
    ]
    for command, check in steps:
        ip(*command.split())
        wait_for(lambda: in_sync(server) and check(), 10, 0.05)
    assert server.count(FibSnapshot) == 1  # all of it as deltas
    # The audits (every second here) ran meanwhile, and never found anything the events had missed.
    wait_for(lambda: server.count(FibAudit) >= 2, 10, 0.05)
    with server.lock:
        audits = [msg for msg in server.received if isinstance(msg, FibAudit)]
    assert audits[-1].audits >= 2 and audits[-1].repaired == 0, audits[-1]


def test_a_nic_moved_into_a_vrf_takes_its_routes_along(server: MirroringServer, agent: subprocess.Popen[bytes]) -> None:
    if sh("ip", "-n", NS, "link", "add", "blue", "type", "vrf", "table", "10", check=False).returncode:
        pytest.skip("this kernel has no VRF devices")
    steps: list[tuple[str, Callable[[], bool]]] = [
        ("route add 198.18.5.0/24 via 10.0.2.2", lambda: "198.18.5.0/24" in server.routes()),
        ("link set blue up", lambda: True),
        ("link set eth2 master blue", lambda: "198.18.5.0/24" not in server.routes()),
        ("link set eth2 nomaster", lambda: True),
        ("link del blue", lambda: True),
    ]
    for command, check in steps:
        ip(*command.split())
        wait_for(lambda: in_sync(server) and check(), 10, 0.05)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_twenty_thousand_routes_in_a_batch(
    server: MirroringServer, agent: subprocess.Popen[bytes], tmp_path: Path, family: str
) -> None:
    if family == "ipv4":
        prefixes = [f"10.{100 + n // 256}.{n % 256}.0/24" for n in range(20000)]
        via = "10.0.1.2"
    else:
        prefixes = [f"2001:db8:{0x1000 + n:x}::/48" for n in range(20000)]
        via = "2001:db8:1::2"
    batch = tmp_path / "add.batch"
    batch.write_text("".join(f"route add {p} via {via} dev eth1\n" for p in prefixes))
    before = server.count(FibDelta)
    ip("-batch", str(batch))
    wait_for(lambda: set(prefixes) <= server.routes().keys(), 60, 0.05)  # 20k routes in
    assert in_sync(server)
    deltas = server.count(FibDelta) - before
    assert deltas < 2000, f"{deltas} deltas for 20k routes: events are not coalesced"
    batch.write_text("".join(f"route del {p}\n" for p in prefixes))
    ip("-batch", str(batch))
    wait_for(lambda: not set(prefixes) & server.routes().keys(), 60, 0.05)  # 20k routes gone
    assert in_sync(server)


def test_link_state_sets_the_nic_down_and_up(server: MirroringServer, agent: subprocess.Popen[bytes]) -> None:
    def nic_up() -> bool:
        return "UP" in ip_json("link", "show", "eth2")[0]["flags"]

    server.send(LinkState("eth2", False))
    wait_for(lambda: not nic_up(), 10, 0.05)
    # The kernel flushes eth2's routes without notifying: the client must notice anyway.
    wait_for(lambda: "10.0.2.0/24" not in server.routes(), 10, 0.05)
    wait_for(lambda: in_sync(server), 10, 0.05)
    assert [hop.ifname for hop in server.routes()["10.30.0.0/16"].nexthops] == ["eth1"]
    with server.lock:
        assert server.mirror.interfaces["eth2"].up is False
    server.send(LinkState("eth2", True))
    wait_for(nic_up, 10, 0.05)
    wait_for(lambda: len(server.routes().get("10.30.0.0/16", Route("")).nexthops) == 2, 10, 0.05)  # multipath back
    wait_for(lambda: in_sync(server), 10, 0.05)


def test_mapping_packets_until_port_mapped(server: MirroringServer, agent: subprocess.Popen[bytes]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(mapping.ETH_TYPE)) as capture:
        capture.bind((ROOT_PEER, mapping.ETH_TYPE))
        capture.settimeout(3)
        frames = [capture.recv(2048) for _ in range(2)]  # one a second
        mac = ip_json("link", "show", "eth1")[0]["address"]
        for frame in frames:
            assert mapping.decode(frame) == mapping.MappingPacket(NS, "eth1")
            assert frame[6:12] == bytes.fromhex(mac.replace(":", ""))
        server.send(PortMapped("eth1", 0xC0001, 1))
        time.sleep(0.5)
        capture.settimeout(0)
        while True:  # drop what was already in flight
            try:
                capture.recv(2048)
            except BlockingIOError:
                break
        capture.settimeout(2.5)
        with pytest.raises(TimeoutError):
            capture.recv(2048)


def test_snapshot_request_reads_the_kernel_again(server: MirroringServer, agent: subprocess.Popen[bytes]) -> None:
    ip("route", "add", "10.60.0.0/16", "via", "10.0.1.2")
    server.send(SnapshotRequest(7))

    def reply() -> FibSnapshot | None:
        with server.lock:
            return next(
                (m for m in server.received if isinstance(m, FibSnapshot) and m.request_id == 7), None
            )

    wait_for(lambda: reply() is not None, 10, 0.05)
    answer = reply()
    assert answer is not None
    assert "10.60.0.0/16" in {route.prefix for route in answer.fib.routes}
    wait_for(lambda: in_sync(server), 10, 0.05)
    with server.lock:
        assert {r.prefix: r for r in answer.fib.routes} == server.mirror.routes


def test_sigterm_says_goodbye_and_exits_cleanly(server: MirroringServer, agent: subprocess.Popen[bytes]) -> None:
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    assert server.count(Goodbye) == 1


OVERFLOW_SCRIPT = """
import asyncio, json, sys
from routeflow.client.watcher import Watcher
from routeflow.protocol.messages import FibSnapshot

async def main(target):
    watcher = Watcher(rcvbuf=4096)  # tiny on purpose (the kernel allows no less): the burst must overflow it
    snapshots = 0
    async for update in watcher.updates():
        if isinstance(update, FibSnapshot):
            snapshots += 1
            print("snapshot", flush=True)
        if len(watcher.fib().routes) >= target:
            break
    print(json.dumps({"snapshots": snapshots, "routes": len(watcher.fib().routes)}), flush=True)

asyncio.run(main(int(sys.argv[1])))
"""


def test_overflow_is_recovered_by_a_full_reread(netns: None, tmp_path: Path) -> None:
    baseline = len(kernel_routes())
    batch = tmp_path / "add.batch"
    batch.write_text(
        "".join(f"route add 10.{100 + n // 256}.{n % 256}.0/24 via 10.0.1.2\n" for n in range(20000))
    )
    argv = ["ip", "netns", "exec", NS, sys.executable, "-c", OVERFLOW_SCRIPT, str(baseline + 20000)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "snapshot"
        ip("-batch", str(batch))
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["routes"] == baseline + 20000
    assert result["snapshots"] >= 2, "the burst did not overflow the buffer: nothing was tested"
