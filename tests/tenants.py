"""Two tenants, tA and tB, multiplexed on one datapath with the same addresses: the config,
FIBs and ports that the compiler's, the core's and verify's multiplexing tests translate.

Each has an access port (tA port 1, tB port 2) with host 10.1.0.100 behind it, and a
VLAN of shared port 3 (tA vlan 10, tB vlan 20) towards its next router, 10.0.0.2, with
a route to 10.2.0.0/24 through it.
"""

from __future__ import annotations

from routeflow.config.loader import parse_config
from routeflow.model import Fib, Interface, Neighbour, NextHop, PortDesc, Route

#: Per tenant: access port, VLAN on port 3, NIC MACs, host MAC, next router MAC.
TENANTS = {
    "tA": {"port": 1, "vlan": 10, "macs": ("02:00:00:00:0a:01", "02:00:00:00:0a:02"),
           "host": "0a:00:00:00:0a:64", "gw": "0a:00:00:00:0a:02"},
    "tB": {"port": 2, "vlan": 20, "macs": ("02:00:00:00:0b:01", "02:00:00:00:0b:02"),
           "host": "0a:00:00:00:0b:64", "gw": "0a:00:00:00:0b:02"},
}
SHARED_PORT = 3

CONFIG = parse_config({"vms": [
    {"name": name, "dpid": 1, "engine": "none", "interfaces": [
        {"name": "eth1", "port": t["port"], "addresses": ["10.1.0.1/24"]},
        {"name": "eth2", "port": SHARED_PORT, "vlan": t["vlan"], "addresses": ["10.0.0.1/30"]},
    ]} for name, t in TENANTS.items()
]})
VMS = {vm.name: vm for vm in CONFIG.vms}


def fib(name: str, *routes: Route) -> Fib:
    """Tenant ``name``'s FIB: its connected subnets, the route to 10.2.0.0/24, ``routes``."""
    t = TENANTS[name]
    return Fib(
        (Interface("eth1", t["macs"][0], True, ("10.1.0.1/24",)),
         Interface("eth2", t["macs"][1], True, ("10.0.0.1/30",))),
        (Route("10.1.0.0/24", (NextHop("eth1"),), proto="kernel"),
         Route("10.0.0.0/30", (NextHop("eth2"),), proto="kernel"),
         Route("10.2.0.0/24", (NextHop("eth2", "10.0.0.2"),), proto="ospf"), *routes),
        (Neighbour("eth1", "10.1.0.100", t["host"]), Neighbour("eth2", "10.0.0.2", t["gw"])),
    )


def ports(*down: int) -> dict[int, PortDesc]:
    """Ports 1-3 of the shared datapath, up but for ``down``."""
    return {n: PortDesc(n, f"s1-eth{n}", f"aa:00:00:00:00:0{n}", n not in down) for n in (1, 2, 3)}


def virtual_ports(name: str) -> list[tuple[int, int | None]]:
    """Tenant ``name``'s (port, VLAN) pairs."""
    return [(TENANTS[name]["port"], None), (SHARED_PORT, TENANTS[name]["vlan"])]
