"""The incremental compiler always equals a full compile of the same state."""

import random

import pytest
from tests.datapath import CONNECTED, IFACES, NEIGHBOURS, VM, ports

from routeflow.flows.compiler import compile_datapath
from routeflow.flows.incremental import IncrementalCompiler
from routeflow.model import Fib, Neighbour, NextHop, Route

GATEWAYS4 = [("eth2", "10.0.2.2"), ("eth3", "10.0.3.2"), ("eth2", "10.0.2.3"), ("eth1", "172.31.1.100")]
GATEWAYS6 = [("eth2", "fe80::2:2"), ("eth3", "fe80::3:2"), ("eth2", "fe80::2:3"), ("eth1", "2001:db8:1::100")]
GATEWAYS = GATEWAYS4 + GATEWAYS6
PREFIXES = ["172.31.4.0/24", "172.31.5.0/24", "0.0.0.0/0", "172.31.1.100/32", "10.0.3.2/32",
            "192.0.2.0/25", "192.0.2.0/24", "2001:db8::/32", "2001:db8:4::/48", "::/0", "2001:db8:1::100/128"]


def random_route(rng: random.Random, prefix: str) -> Route:
    kind = rng.random()
    if kind < 0.1:
        return Route(prefix, type="blackhole")
    if kind < 0.2:
        return Route(prefix, (NextHop(rng.choice(["eth1", "eth2"])),))
    hops = rng.sample(GATEWAYS6 if ":" in prefix else GATEWAYS4, rng.choice([1, 1, 2, 3]))
    return Route(prefix, tuple(NextHop(i, g) for i, g in hops), proto="ospf")


def full(routes, neighbours):
    fib = Fib(IFACES, tuple(routes.values()), tuple(neighbours.values()))
    return compile_datapath(VM, fib, ports())


@pytest.mark.parametrize("seed", range(40))
def test_random_changes_match_full_compile(seed):
    rng = random.Random(seed)
    routes = {r.prefix: r for r in CONNECTED}
    neighbours = {(n.ifname, n.ip): n for n in NEIGHBOURS}
    interfaces = {i.ifname: i for i in IFACES}
    inc = IncrementalCompiler(VM)
    inc.rebuild(interfaces, routes, neighbours, ports())
    for _ in range(30):
        changed_routes, changed_neighbours = set(), set()
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.6:
                prefix = rng.choice(PREFIXES)
                if prefix in routes and rng.random() < 0.4:
                    del routes[prefix]
                else:
                    routes[prefix] = random_route(rng, prefix)
                changed_routes.add(prefix)
            else:
                ifname, ip = rng.choice(GATEWAYS + [("eth3", "172.31.1.100")])
                key = (ifname, ip)
                if key in neighbours and rng.random() < 0.5:
                    del neighbours[key]
                else:
                    neighbours[key] = Neighbour(ifname, ip, f"0a:00:00:00:{rng.randint(0, 3):02x}:01")
                changed_neighbours.add(key)
        before = dict(inc.table.flows)
        changes = inc.update(routes, neighbours, changed_routes, changed_neighbours)
        expected = full(routes, neighbours)
        assert inc.table.flows == expected.table.flows
        assert inc.table.groups == expected.table.groups
        assert sorted(inc.unresolved, key=repr) == sorted(expected.unresolved, key=repr)
        # The reported changes are exactly the difference.
        for key in set(before) | set(inc.table.flows):
            if before.get(key) != inc.table.flows.get(key):
                assert key in changes.flows


def test_rebuild_equals_full_compile():
    routes = {r.prefix: r for r in CONNECTED}
    routes["172.31.4.0/24"] = Route("172.31.4.0/24", (NextHop("eth2", "10.0.2.2"), NextHop("eth3", "10.0.3.2")))
    neighbours = {(n.ifname, n.ip): n for n in NEIGHBOURS}
    inc = IncrementalCompiler(VM)
    table = inc.rebuild({i.ifname: i for i in IFACES}, routes, neighbours, ports(3))
    fib = Fib(IFACES, tuple(routes.values()), tuple(neighbours.values()))
    assert table.flows == compile_datapath(VM, fib, ports(3)).table.flows
