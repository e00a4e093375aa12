"""One VM, rA, and its datapath: the config, FIB and switch ports that the flow
compiler's and the server core's tests translate, and the packets they send."""

from __future__ import annotations

from routeflow.config.loader import parse_config
from routeflow.config.schema import VmConfig, VmInterface
from routeflow.model import Interface, Neighbour, NextHop, PortDesc, Route

MAC1, MAC2, MAC3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
H1, GW2, GW3 = "0a:00:00:00:00:01", "0a:00:00:00:00:02", "0a:00:00:00:00:03"

VM = VmConfig(
    name="rA",
    dpid=1,
    interfaces=(
        VmInterface("eth1", 1, ("172.31.1.1/24",)),
        VmInterface("eth2", 2, ("10.0.2.1/30",)),
        VmInterface("eth3", 3, ("10.0.3.1/30",)),
    ),
)
IFACES = (
    Interface("eth1", MAC1, True, ("172.31.1.1/24",)),
    Interface("eth2", MAC2, True, ("10.0.2.1/30",)),
    Interface("eth3", MAC3, True, ("10.0.3.1/30",)),
    Interface("lo", "00:00:00:00:00:00", True, ("10.255.0.1/32",)),
)
CONNECTED = (
    Route("172.31.1.0/24", (NextHop("eth1"),), proto="kernel"),
    Route("10.0.2.0/30", (NextHop("eth2"),), proto="kernel"),
    Route("10.0.3.0/30", (NextHop("eth3"),), proto="kernel"),
)
NEIGHBOURS = (
    Neighbour("eth1", "172.31.1.100", H1),
    Neighbour("eth2", "10.0.2.2", GW2),
    Neighbour("eth3", "10.0.3.2", GW3),
)


def ports(*down: int) -> dict[int, PortDesc]:
    """rA's switch ports 1-3, up but for ``down``."""
    return {n: PortDesc(n, f"s1-eth{n}", f"aa:00:00:00:00:0{n}", n not in down) for n in (1, 2, 3)}


def ip_packet(dst: str, in_port: int = 1, eth_dst: str = MAC1, **extra: object) -> dict[str, object]:
    """An IPv4 packet for ``dst`` arriving on ``in_port``, addressed to the router's MAC there."""
    return {"in_port": in_port, "eth_type": 0x0800, "eth_dst": eth_dst, "ipv4_dst": dst, "ip_proto": 1, **extra}


#: A server's configuration with rA as its only VM.
CONFIG = parse_config({"vms": [{
    "name": VM.name, "dpid": VM.dpid, "engine": "none",
    "interfaces": [{"name": i.name, "port": i.port, "addresses": list(i.addresses)} for i in VM.interfaces],
}]})
