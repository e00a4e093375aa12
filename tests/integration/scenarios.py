"""Scenarios shared by rftest2 and its variants (any engine, either routing plane): ECMP
between h2 and h3, and link A-B, which h1 (sA) to h2 (sB) takes, cut or silenced, then
restored."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from routeflow.harness import CONVERGE_TIMEOUT, Stack, ping, route_device, wait_for
from routeflow.lab import network
from routeflow.vnet.frr import vtysh

#: rftest2's VMs.
RFTEST2_VMS = ("rA", "rB", "rC", "rD")
#: Seconds every adjacency must have been up before a restart: routing has settled.
STABLE = 10.0
#: The VM NICs that mirror link A-B's ports: sA port 3 and sB port 2.
A_B_NICS = ("rA:eth3", "rB:eth2")


def vm_routes(stack: Stack, vm: str) -> list[dict]:
    """The routes the server holds for ``vm``, as ``routeflow status --json`` lists them."""
    return next(v for v in stack.status()["vms"] if v["name"] == vm)["routes"]


def wait_for_ecmp_group(stack: Stack) -> None:
    """h2 (sB) to h3 (sC): B-A-C (sB port 2) and B-D-C (sB port 5) cost the same. Wait until
    rB's route to h3's subnet has both next hops (OSPF may still be adding the second) and
    sB forwards it by a select group."""
    def ecmp_route() -> bool:
        route = next((r for r in vm_routes(stack, "rB") if r["prefix"] == "172.31.3.0/24"), None)
        return route is not None and len(route["nexthops"]) == 2

    wait_for(ecmp_route, 30, 0.5)
    wait_for(lambda: any("172.31.3.0/24" in f and "group:" in f for f in stack.flows("0x2")), 10, 0.2)


def virtual_links(stack: Stack) -> set[tuple[str, ...]]:
    """VM NIC pairs wired together on the RFVS, as ``("rA:eth3", "rB:eth2")``."""
    return {tuple(sorted((f"{vm['name']}:{i['name']}", i["virtual_link"])))
            for vm in stack.status(detail=False)["vms"] for i in vm["interfaces"] if i["virtual_link"]}


def _via_a_b() -> bool:
    """rA routes to h2 over A-B (its eth3), and rB back to h1 over A-B (its eth2)."""
    return route_device("rA", "172.31.2.100") == "eth3" and route_device("rB", "172.31.1.100") == "eth2"


def _cut_port_mirrored(stack: Stack) -> bool:
    """rA's eth3, which mirrors sA port 3, is down and no flow of sA outputs there."""
    vm = next(v for v in stack.status()["vms"] if v["name"] == "rA")
    eth3 = next(i for i in vm["interfaces"] if i["name"] == "eth3")
    return eth3["up"] is False and not any("output:3" in f for f in stack.flows("0x1"))


def _rerouted(stack: Stack) -> None:
    """h1 reaches h2 without A-B, verify is clean, and every other pair whose path crossed
    A-B follows (those may need a moment more)."""
    wait_for(lambda: not _via_a_b() and ping("h1", "172.31.2.100", timeout=0.5).ok, 30, 0.2)
    stack.wait_verify_clean()
    wait_for(lambda: all(r.ok for r in stack.all_pairs(count=1).values()), 30, 0.5)


def _reconverged(stack: Stack, virtual: bool) -> None:
    """Every pair pings again (and, in the virtual plane, A-B is wired again); verify is clean."""
    wait_for(lambda: stack.all_pairs_ok() and (not virtual or A_B_NICS in virtual_links(stack)),
             CONVERGE_TIMEOUT, 0.5)
    stack.wait_verify_clean()


def cut_reroutes_and_restores(stack: Stack, while_cut: Callable[[], None] | None = None) -> None:
    """Cut A-B (carrier lost): the mirrored NICs go down at once and traffic reroutes;
    ``while_cut`` looks at the stack once it has, before A-B is restored."""
    wait_for(_via_a_b, CONVERGE_TIMEOUT, 0.2)  # after an earlier cut, OSPF may still be returning to A-B
    network.set_link("A-B", "down", state_path=stack.lab_state)
    try:
        wait_for(lambda: _cut_port_mirrored(stack), 10, 0.2)
        _rerouted(stack)
        if while_cut is not None:
            while_cut()
    finally:
        network.set_link("A-B", "up", state_path=stack.lab_state)
    _reconverged(stack, stack.config.vms[0].routing_plane == "virtual")


def silence_reroutes_and_restores(stack: Stack, probe_interval: float) -> None:
    """Silence A-B (carrier and port state up, every frame dropped): no port goes down.
    In the physical plane OSPF's dead interval notices; in the virtual plane, where the
    routers' hellos cross the RFVS, link discovery must first unwire the NICs (after 3.5
    probe intervals) so that the hellos take the dead link and fail too."""
    virtual = stack.config.vms[0].routing_plane == "virtual"
    wait_for(_via_a_b, CONVERGE_TIMEOUT, 0.2)  # after an earlier cut, OSPF may still be returning to A-B
    network.set_link("A-B", "silent", state_path=stack.lab_state)
    try:
        if virtual:
            wait_for(lambda: A_B_NICS not in virtual_links(stack), 3.5 * probe_interval + 2, 0.1)
        _rerouted(stack)
        assert all(i["up"] for vm in stack.status()["vms"] for i in vm["interfaces"]), "a NIC went down"
    finally:
        network.set_link("A-B", "up", state_path=stack.lab_state)
    _reconverged(stack, virtual)


def kernel_routes(vm: str) -> set[tuple[str, tuple[tuple[str | None, str], ...]]]:
    """``vm``'s routes from routing protocols (not the kernel's connected ones) as ``ip -j``
    shows them: prefix and next hops, whatever next-hop object carries them."""
    routes = set()
    for family in ("-4", "-6"):
        shown = subprocess.run(["ip", "-n", vm, "-j", family, "route", "show", "table", "main"],
                               capture_output=True, text=True, check=True).stdout
        for entry in json.loads(shown or "[]"):
            if entry.get("protocol") != "kernel" and not entry["dst"].startswith("fe80"):
                hops = tuple(sorted((hop.get("gateway"), hop["dev"]) for hop in entry.get("nexthops", [entry])))
                routes.add((entry["dst"], hops))
    return routes


def _settled_routes(vm: str, quiet: float = 3.0) -> set[tuple[str, tuple[tuple[str | None, str], ...]]]:
    """``vm``'s routes once they have not changed for ``quiet`` seconds (after a link cut,
    OSPF may still be bringing an equal-cost path back)."""
    seen = [kernel_routes(vm), time.monotonic()]

    def settled() -> bool:
        now = kernel_routes(vm)
        if now != seen[0]:
            seen[:] = [now, time.monotonic()]
        return time.monotonic() - seen[1] >= quiet

    wait_for(settled, CONVERGE_TIMEOUT, 0.1)
    return seen[0]


@dataclass
class Restart:
    """What a routing daemon's restart did: when its routes were back in the VM's kernel,
    how long until verify was clean after that, and the pings lost meanwhile."""

    routes_back_s: float
    clean_after_s: float
    lost: int
    sent: int


def stream_loss(output: str) -> tuple[int, int]:
    """Pings sent and lost in the output of a ``ping`` stream stopped by SIGINT: sent is the
    highest sequence number answered, lost the sequence numbers below it never answered.
    (ping's own summary counts the packet in flight when it is interrupted as lost.)"""
    answered = {int(n) for n in re.findall(r"icmp_seq=(\d+) ", output)}
    sent = max(answered, default=0)
    return sent, sent - len(answered)


def kill_daemon_under_ping(stack: Stack, vm: str, daemon: str, destination: str) -> Restart:
    """``kill -9`` ``vm``'s ``daemon`` while h1 pings ``destination`` every 10 ms; the
    RF-Server's engine supervisor starts it again (zebra: with the VM's other daemons
    after it, as watchfrr does). Wait until the VM's kernel has a route to every prefix
    it had before (their paths may differ: a fresh start may find a better one than the
    old instance had), then measure how long until verify is clean."""
    wanted = {prefix for prefix, _ in _settled_routes(vm)}
    old = stack.daemon_pid(vm, daemon)
    pinger = subprocess.Popen(["ip", "netns", "exec", "h1", "ping", "-n", "-i", "0.01", "-W", "1", destination],
                              stdout=subprocess.PIPE, text=True)
    try:
        start = time.monotonic()
        stack.kill_daemon(vm, daemon)
        wait_for(lambda: stack.daemon_pid(vm, daemon) not in (None, old), 30, 0.05)
        try:
            wait_for(lambda: wanted <= {prefix for prefix, _ in kernel_routes(vm)}, CONVERGE_TIMEOUT, 0.05)
        except TimeoutError:
            raise AssertionError(f"{vm}: no route back to {wanted - {p for p, _ in kernel_routes(vm)}}") from None
        back = time.monotonic()
        stack.wait_verify_clean(timeout=10, interval=0.05)
        clean = time.monotonic()
    finally:
        pinger.send_signal(signal.SIGINT)
        summary = pinger.communicate(timeout=10)[0]
    sent, lost = stream_loss(summary)
    return Restart(round(back - start, 2), round(clean - back, 2), lost, sent)


def adjacencies() -> dict[tuple[str, str, str], float]:
    """Every Full OSPF and OSPFv3 adjacency of the VMs, ``(vm, protocol, neighbour id)``,
    with how long it has been up, in seconds."""
    up: dict[tuple[str, str, str], float] = {}
    for vm in RFTEST2_VMS:
        for router_id, entries in json.loads(vtysh(vm, "show ip ospf neighbor json"))["neighbors"].items():
            for entry in entries:
                if entry["nbrState"].startswith("Full"):
                    up[(vm, "ospf", router_id)] = entry["upTimeInMsec"] / 1000
        for entry in json.loads(vtysh(vm, "show ipv6 ospf6 neighbor json"))["neighbors"]:
            if entry["state"] == "Full":
                hours, minutes, seconds = (int(n) for n in entry["duration"].split(":"))
                up[(vm, "ospf6", entry["neighborId"])] = hours * 3600 + minutes * 60 + seconds
    return up


def converged(stack: Stack) -> dict[tuple[str, str, str], float]:
    """Once every router link has had its OSPF and OSPFv3 adjacency Full, seen from both
    ends, for ``STABLE`` s (adjacencies flap while a stack comes up, and routes follow)
    and the server has sent no flow change for 3 s: the adjacencies and their uptimes."""
    links = sum(all(end.is_switch for end in link.ends) for link in stack.topology.links)

    def stable() -> bool:
        up = adjacencies()
        return len(up) == 2 * 2 * links and min(up.values()) >= STABLE

    wait_for(stable, CONVERGE_TIMEOUT, 0.5)
    seen = [flow_mods(stack), time.monotonic()]

    def quiet() -> bool:
        now = flow_mods(stack)
        if now != seen[0]:
            seen[:] = [now, time.monotonic()]
        return time.monotonic() - seen[1] >= 3.0

    wait_for(quiet, CONVERGE_TIMEOUT, 0.2)
    return adjacencies()


def stayed_up(before: dict[tuple[str, str, str], float], since: float) -> list[tuple[str, str, str]]:
    """The adjacencies of ``before`` (their uptimes at ``since``, a monotonic time) that
    went down since: their uptime now is shorter than then plus the time passed."""
    now = adjacencies()
    elapsed = time.monotonic() - since
    # The slack: OSPFv3 gives whole seconds.
    return [key for key, uptime in before.items() if now.get(key, 0) < uptime + elapsed - 1.5]


def flow_mods(stack: Stack) -> dict[str, int]:
    """Flow and group changes the running server sent, by datapath (its counters start at 0)."""
    return {dp["dpid"]: dp["flow_mods_sent"] for dp in stack.status(detail=False)["datapaths"]}
