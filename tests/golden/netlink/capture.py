"""Regenerate the golden Netlink fixtures of this directory (needs root).

    flock /run/routeflow-stack.lock .venv/bin/python tests/golden/netlink/capture.py [ipv4|ipv6|nexthop]

Builds a namespace and, inside it, records a full dump and then the events of
a scripted sequence of ``ip`` commands, as raw netlink datagrams in hex, read
exactly as the RF-Client reads them (its dump and its event socket), beside
the model values that ``routeflow.client.fib`` derives. Three scenarios:
``ipv4`` (``dump.json``, ``events.json``; its links carry IPv6 link-local
addresses too), ``ipv6`` (``dump6.json``, ``events6.json``: a dual-stack
router) and ``nexthop`` (``dump-nexthop.json``, ``events-nexthop.json``:
routes through kernel next-hop objects, as FRR installs them, and what the
kernel removes without a word). Review the ``expected`` parts against the
``ip`` outputs stored with them before committing a regenerated file.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from routeflow.client import watcher
from routeflow.client.fib import FibState

HERE = Path(__file__).parent
NS = "rf-golden"

#: The sandbox's links, the same for both captures.
LINKS = [
    "link set lo up",
    "link add eth1 type veth peer name peer1",
    "link add eth2 type veth peer name peer2",
    "link add eth3 type veth peer name peer3",  # peer3 stays down: eth3 has no carrier
    "link set eth1 up", "link set peer1 up", "link set eth2 up", "link set peer2 up",
    "link set eth3 up",
]

SETUP = [
    *LINKS,
    "addr add 10.0.1.1/24 dev eth1",
    "addr add 10.0.2.1/24 dev eth2",
    "addr add 10.0.9.1/24 dev eth3",
    "addr add 10.255.0.1/32 dev lo",
    "route add 10.20.0.0/16 via 10.0.1.2 metric 100 proto static",
    "route add 10.20.0.0/16 via 10.0.2.2 metric 200",
    "route add 10.30.0.0/16 proto 188 nexthop via 10.0.1.2 dev eth1 nexthop via 10.0.2.2 dev eth2 weight 2",
    "route add blackhole 10.40.0.0/16",
    "route add unreachable 10.41.0.0/16",
    "route add prohibit 10.42.0.0/16 proto bird",
    "route add default via 10.0.1.254",
    "route add 10.50.0.0/16 dev eth3",
    "route add 10.60.0.0/16 via 10.0.1.2 table 100",
    "route add 10.61.0.0/16 via 10.0.1.2 tos 0x10",
    "route add 10.70.0.0/16 via inet6 fe80::1 dev eth1",
    "route add 2001:db8::/32 via fe80::1 dev eth1",
    "neigh add 10.0.1.2 lladdr 02:00:00:00:01:02 dev eth1 nud reachable",
    "neigh add 10.0.2.2 lladdr 02:00:00:00:02:02 dev eth2 nud stale",
    "neigh add 10.0.1.254 lladdr 02:00:00:00:01:FE dev eth1 nud permanent",
    "neigh add 10.0.1.3 lladdr 02:00:00:00:01:03 dev eth1 nud delay",
    "neigh add 10.0.1.4 lladdr 02:00:00:00:01:04 dev eth1 nud probe",
    "neigh add 10.0.1.5 lladdr 02:00:00:00:01:05 dev eth1 nud noarp",
    "neigh add 10.0.1.6 dev eth1 nud incomplete",
    "neigh add 10.0.1.7 lladdr 02:00:00:00:01:07 dev eth1 nud failed",
    "neigh add 10.0.1.8 dev eth1 nud none",
    "neigh add 10.0.1.9 lladdr 01:00:5e:00:00:05 dev eth1 nud noarp",
    "neigh add proxy 10.0.1.10 dev eth1",
]  # fmt: skip

STEPS = [
    ("a better metric shadows the route", ["route add 10.20.0.0/16 via 10.0.2.2 metric 50"]),
    ("deleting it falls back to the next", ["route del 10.20.0.0/16 metric 50"]),
    ("deleting a shadowed route changes nothing", ["route del 10.20.0.0/16 metric 200"]),
    ("multipath", ["route add 10.80.0.0/16 nexthop via 10.0.1.2 dev eth1 nexthop via 10.0.2.2 dev eth2"]),
    ("replace multipath by one next hop", ["route replace 10.80.0.0/16 via 10.0.1.2"]),
    ("delete", ["route del 10.80.0.0/16"]),
    (
        "protocol names",
        ["route add blackhole 10.81.0.0/16 proto 42", "route add 10.82.0.0/16 via 10.0.1.2 proto 250"],
    ),
    (
        "ignored tables and types (the IPv6 route is kept: dump6.json has the IPv6 cases)",
        [
            "route add 10.83.0.0/16 via 10.0.1.2 table 100",
            "route add local 10.84.0.0/16 dev eth1 table main",
            "route add 2001:db9::/32 via fe80::2 dev eth1",
        ],
    ),
    ("neighbour learnt", ["neigh add 10.0.2.3 lladdr 02:00:00:00:02:03 dev eth2 nud reachable"]),
    ("neighbour moved", ["neigh replace 10.0.2.3 lladdr 02:00:00:00:02:33 dev eth2 nud stale"]),
    ("neighbour failed", ["neigh change 10.0.2.3 dev eth2 nud failed"]),
    (
        "neighbour deleted",
        [
            "neigh replace 10.0.2.4 lladdr 02:00:00:00:02:04 dev eth2 nud reachable",
            "neigh del 10.0.2.4 dev eth2",
        ],
    ),
    ("addresses", ["addr add 10.0.2.100/24 dev eth2", "addr add 10.255.0.2/32 dev lo"]),
    ("address removed", ["addr del 10.0.2.100/24 dev eth2"]),
    ("link down flushes routes silently", ["link set eth2 down"]),
    ("link up revives multipath legs silently", ["link set eth2 up"]),
    ("new link", ["link add eth4 type veth peer name peer4"]),
    ("link deleted", ["link del eth4"]),
    ("link renamed", ["link set eth3 down", "link set eth3 name wan0", "link set wan0 up"]),
]

SETUP6 = [
    *LINKS,
    "addr add 10.0.1.1/24 dev eth1",
    "addr add 2001:db8:1::1/64 dev eth1 nodad",
    "addr add 2001:db8:2::1/64 dev eth2 nodad",
    "addr add fd00:9::1/64 dev eth3 nodad",
    "addr add 2001:db8:ff::1/128 dev lo",
    "route add 2001:db8:20::/48 via 2001:db8:1::2 metric 100 proto static",
    "route add 2001:db8:20::/48 via 2001:db8:2::2 metric 200",
    "route add 2001:db8:30::/48 proto 188 nexthop via 2001:db8:1::2 dev eth1 nexthop via fe80::2 dev eth2 weight 2",
    "route add 2001:db8:31::/48 via fe80::1 dev eth1",
    "route add blackhole 2001:db8:40::/48",
    "route add unreachable 2001:db8:41::/48",
    "route add prohibit 2001:db8:42::/48 proto bird",
    "route add default via 2001:db8:1::fe",
    "route add 2001:db8:50::/48 dev eth3",
    "route add 2001:db8:60::/48 via 2001:db8:1::2 table 100",
    "route add ff05::/16 dev eth1",
    "route add 10.70.0.0/16 via inet6 fe80::1 dev eth1",
    "neigh add 2001:db8:1::2 lladdr 02:00:00:00:01:02 dev eth1 nud reachable",
    "neigh add fe80::2 lladdr 02:00:00:00:02:02 dev eth2 nud stale router",
    "neigh add 2001:db8:1::fe lladdr 02:00:00:00:01:FE dev eth1 nud permanent router",
    "neigh add 2001:db8:1::3 lladdr 02:00:00:00:01:03 dev eth1 nud delay",
    "neigh add 2001:db8:1::4 lladdr 02:00:00:00:01:04 dev eth1 nud probe",
    "neigh add 2001:db8:1::5 lladdr 02:00:00:00:01:05 dev eth1 nud noarp",
    "neigh add 2001:db8:1::6 dev eth1 nud incomplete",
    "neigh add 2001:db8:1::7 lladdr 02:00:00:00:01:07 dev eth1 nud failed",
    "neigh add 2001:db8:1::8 dev eth1 nud none",
    "neigh add ff02::5 lladdr 33:33:00:00:00:05 dev eth1 nud noarp",
    "neigh add proxy 2001:db8:1::10 dev eth1",
]  # fmt: skip

#: (title, commands[, seconds to wait for the events: DAD takes about a second]).
STEPS6: list[tuple[str, list[str]] | tuple[str, list[str], float]] = [
    ("a better metric shadows the route", ["route add 2001:db8:20::/48 via 2001:db8:2::2 metric 50"]),
    ("deleting it falls back to the next", ["route del 2001:db8:20::/48 metric 50"]),
    ("append: one message with the whole group", ["route append 2001:db8:20::/48 via 2001:db8:2::3 metric 100"]),
    ("delete one leg of the group", ["route del 2001:db8:20::/48 via 2001:db8:2::3 metric 100"]),
    ("deleting a shadowed route changes nothing", ["route del 2001:db8:20::/48 metric 200"]),
    ("multipath with a link-local leg",
     ["route add 2001:db8:80::/48 nexthop via 2001:db8:1::2 dev eth1 nexthop via fe80::2 dev eth2"]),
    ("replace multipath by one next hop", ["route replace 2001:db8:80::/48 via 2001:db8:1::2"]),
    ("replace one next hop by multipath",
     ["route replace 2001:db8:80::/48 nexthop via 2001:db8:1::9 dev eth1 nexthop via fe80::9 dev eth2"]),
    ("delete the whole group", ["route del 2001:db8:80::/48"]),
    ("protocol names", ["route add blackhole 2001:db8:81::/48 proto 42",
                        "route add 2001:db8:82::/48 via 2001:db8:1::2 proto 250"]),
    ("ignored tables, types and prefixes", [
        "route add 2001:db8:83::/48 via 2001:db8:1::2 table 100",
        "route add local 2001:db8:84::1 dev eth1 table main",
        "route add ff0e::/16 dev eth2",
        "route add fe80::/64 dev eth1 metric 10",
    ]),
    ("neighbour learnt", ["neigh add 2001:db8:2::3 lladdr 02:00:00:00:02:03 dev eth2 nud reachable"]),
    ("neighbour becomes a router",
     ["neigh replace 2001:db8:2::3 lladdr 02:00:00:00:02:03 dev eth2 router nud reachable"]),
    ("neighbour moved", ["neigh replace 2001:db8:2::3 lladdr 02:00:00:00:02:33 dev eth2 nud stale"]),
    ("neighbour failed", ["neigh change 2001:db8:2::3 dev eth2 nud failed"]),
    ("link-local neighbour deleted", ["neigh del fe80::2 dev eth2"]),
    ("addresses", ["addr add 2001:db8:2::100/64 dev eth2 nodad", "addr add 2001:db8:ff::2/128 dev lo"]),
    ("a tentative address is not the router's yet", ["addr add 2001:db8:2::101/64 dev eth2"], 0.1),
    ("until DAD completes", [], 2.5),
    ("an address whose DAD fails never is",
     ["addr add 2001:db8:2::202/64 dev peer2 nodad", "addr add 2001:db8:2::202/64 dev eth2"], 2.5),
    ("address removed", ["addr del 2001:db8:2::100/64 dev eth2"]),
    ("link down flushes routes silently", ["link set eth2 down"]),
    ("link up revives multipath legs", ["link set eth2 up"], 2.5),
    ("new link", ["link add eth4 type veth peer name peer4"]),
    ("link deleted", ["link del eth4"]),
]  # fmt: skip

SETUP_NEXTHOP = [
    *LINKS,
    "addr add 10.0.1.1/24 dev eth1",
    "addr add 10.0.2.1/24 dev eth2",
    "addr add 2001:db8:1::1/64 dev eth1 nodad",
    "addr add 2001:db8:2::1/64 dev eth2 nodad",
    "nexthop add id 1 via 10.0.1.2 dev eth1",
    "nexthop add id 2 via 10.0.2.2 dev eth2",
    "nexthop add id 10 group 1/2,3",
    "nexthop add id 20 blackhole",
    "nexthop add id 6 via fe80::2 dev eth1",
    "nexthop add id 7 via 2001:db8:2::2 dev eth2",
    "nexthop add id 67 group 6/7",
    "route add 198.18.0.0/24 nhid 1 proto 188",
    "route add 198.18.1.0/24 nhid 10 proto 186",
    "route add 198.18.2.0/24 nhid 20 proto 186",
    "route add 198.18.3.0/24 nhid 7",
    "route add 2001:db8:99::/48 nhid 67 proto 186",
    "route add 2001:db8:98::/48 nhid 6 proto 188",
    "neigh add 10.0.1.2 lladdr 02:00:00:00:01:02 dev eth1 nud reachable",
]  # fmt: skip

STEPS_NEXTHOP: list[tuple[str, list[str]] | tuple[str, list[str], float]] = [
    ("an object replaced moves its routes", ["nexthop replace id 1 via 10.0.1.3 dev eth1"]),
    ("a member deleted shrinks the group, not announced for its routes", ["nexthop del id 2"]),
    ("the member back and the group replaced", ["nexthop add id 2 via 10.0.2.2 dev eth2",
                                                "nexthop replace id 10 group 1,2/2"]),
    ("an object deleted takes its routes without an RTM_DELROUTE", ["nexthop del id 1"]),
    ("an IPv6 member deleted", ["nexthop del id 7"]),
    ("the last IPv6 member deleted: group and routes go", ["nexthop del id 6"]),
    ("objects on a link that loses its carrier are flushed without a word",
     ["nexthop add id 3 via 10.0.2.3 dev eth2", "route add 198.18.4.0/24 nhid 3", "link set peer2 down"]),
    ("carrier back", ["link set peer2 up"], 1.0),
    ("a route's source address removed", ["route add 198.18.5.0/24 via 10.0.1.2 src 10.0.1.1",
                                          "route add 198.18.6.0/24 nexthop via 10.0.1.2 nexthop via 10.0.2.2",
                                          "addr del 10.0.1.1/24 dev eth1"]),
    ("the address back revives the dead multipath leg", ["addr add 10.0.1.1/24 dev eth1"]),
    ("a blackhole object", ["route replace 198.18.0.0/24 nhid 20"]),
]  # fmt: skip

#: Scenario name -> (setup, steps, ``ip`` family flag, dump file, events file).
SCENARIOS: dict[str, tuple[list[str], list[Any], str, str, str]] = {
    "ipv4": (SETUP, STEPS, "-4", "dump.json", "events.json"),
    "ipv6": (SETUP6, STEPS6, "-6", "dump6.json", "events6.json"),
    "nexthop": (SETUP_NEXTHOP, STEPS_NEXTHOP, "-4", "dump-nexthop.json", "events-nexthop.json"),
}


def ip(*args: str) -> str:
    """``ip`` in the namespace the capture runs in."""
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def wait_dad() -> None:
    """Let duplicate address detection finish, so no address changes behind the dump."""
    deadline = time.monotonic() + 10
    while ip("-6", "addr", "show", "tentative").strip() and time.monotonic() < deadline:
        time.sleep(0.1)


def shown(family: str) -> dict[str, str]:
    """What ``ip`` itself shows, stored for review beside the expected values."""
    text = {what: ip(family, what, "show", *extra) for what, extra in
            (("route", ()), ("neigh", ("nud", "all")), ("addr", ()))}  # fmt: skip
    text["nexthop"] = ip("nexthop", "show")
    return text


async def capture(scenario: str) -> None:
    """Run inside the sandbox namespace: set up, dump, then script the steps."""
    setup, script, family, dump_file, events_file = SCENARIOS[scenario]
    for command in setup:
        ip(*command.split())
    wait_dad()
    events = watcher._EventSocket(watcher.RCVBUF)  # the RF-Client's own event socket
    datagrams = await watcher.dump()
    state = FibState.load(list(datagrams))
    (HERE / dump_file).write_text(json.dumps({
        "setup": setup, "ip": shown(family), "messages": [d.hex() for d in datagrams],
        "expected": msgspec.to_builtins(state.fib()),
    }, indent=1) + "\n")  # fmt: skip
    await asyncio.sleep(0.5)
    events.drain()
    events.datagrams.clear()  # settle: these events happened before the dump
    steps = []
    for title, commands, *wait in script:
        for command in commands:
            ip(*command.split())
        await asyncio.sleep(wait[0] if wait else 0.5)
        events.drain()
        batch = list(events.datagrams)
        events.datagrams.clear()
        for data in batch:
            state.apply_datagram(data)
        step: dict[str, Any] = {"title": title, "commands": commands, "messages": [d.hex() for d in batch]}
        step["routes_stale"] = state.routes_stale
        if state.routes_stale:
            fresh = await watcher.dump_routes()
            step["route_dump"] = [d.hex() for d in fresh]
            state.resync(fresh)
        delta = state.take_delta()
        step["expected"] = msgspec.to_builtins(delta) if delta else None
        step["ip_route"] = ip(family, "route") + ip("nexthop", "show")
        steps.append(step)
    (HERE / events_file).write_text(json.dumps({"steps": steps, "final": msgspec.to_builtins(state.fib())},
                                               indent=1) + "\n")  # fmt: skip
    events.close()


def main(argv: list[str]) -> None:
    if argv[:1] == ["--inside"]:
        asyncio.run(capture(argv[1]))
        return
    for name in argv or SCENARIOS:
        subprocess.run(["ip", "netns", "add", NS], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", NS, sys.executable, __file__, "--inside", name], check=True)
        finally:
            subprocess.run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    main(sys.argv[1:])
