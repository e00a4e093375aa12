"""Generate a scenario of any size: a lab topology and the routeflow config that mirrors it.

``routeflow lab generate --switches 64 --degree 3 DIR`` writes ``DIR/topology.yaml`` and
``DIR/routeflow.yaml``, which ``routeflow demo DIR`` brings up like any example. The switches
form a partial mesh: a ring (so the network stays connected when any one link is cut), plus
chords drawn at random (seeded: the same arguments give the same files) until the average
degree is reached; every switch has one host and a trunk to the RFVS, and every VM runs FRR's
OSPF with the fast timers of rftest2.

Numbering, for switch ``i`` (1-based) and the ``k``-th link (0-based), as rftest2's but for
hundreds of switches:

- switch ``s<i>``, datapath id ``i``; VM ``r<i>``; host ``h<i>``;
- port 1 faces the host, ports 2, 3, ... the switch's links in the order they were drawn, and
  port 100 is the trunk; NIC ``eth<port>`` mirrors port ``<port>``;
- host subnet ``172.<16 + i // 256>.<i % 256>.0/24``: the router is ``.1``, the host ``.100``;
- link ``k``: ``10.<k // 256>.<k % 256>.0/24``, its lower-numbered switch's VM ``.1``, the
  other ``.2``; router id and loopback ``10.255.<i // 256>.<i % 256>/32``;
- MAC of ``eth<port>`` on VM ``i``: ``02:52:<i // 256>:<i % 256>:00:<port>`` (fixed, so hosts'
  ARP caches survive a VM's re-creation).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Port of every switch's trunk to the RFVS.
TRUNK = 100
#: Most switches: the numbering above holds to 4096 host subnets; the lab is the limit well before.
MAX_SWITCHES = 1024
#: A switch's links use ports 2 to TRUNK - 1.
MAX_DEGREE = TRUNK - 2


@dataclass(frozen=True)
class Mesh:
    """A partial mesh: ``links`` are pairs of switch numbers (1-based, lower first), in the
    order they were drawn, which is the order of each switch's ports (:meth:`port`)."""

    switches: int
    links: tuple[tuple[int, int], ...]

    def degree(self, switch: int) -> int:
        return sum(switch in link for link in self.links)

    def port(self, switch: int, link: int) -> int:
        """The port of ``switch`` on link number ``link``: 2 for its first link, then 3..."""
        return 2 + sum(switch in self.links[k] for k in range(link))


def mesh(switches: int, degree: float, seed: int = 1) -> Mesh:
    """A ring of ``switches`` plus random chords up to an average ``degree`` (at least 2, the
    ring's); no switch gets more links than the average rounded up (3 at least), and no two
    links join the same pair. ValueError if the arguments cannot make one."""
    if not 3 <= switches <= MAX_SWITCHES:
        raise ValueError(f"--switches must be 3 to {MAX_SWITCHES} (a ring), not {switches}")
    if not 2 <= degree <= min(MAX_DEGREE, switches - 1):
        raise ValueError(f"--degree must be 2 to {min(MAX_DEGREE, switches - 1)} for {switches} switches, "
                         f"not {degree:g}")
    links = [tuple(sorted((i, i % switches + 1))) for i in range(1, switches + 1)]
    taken = set(links)
    degrees = {i: sum(i in link for link in links) for i in range(1, switches + 1)}
    wanted = round(switches * degree / 2)
    rng = random.Random(seed)
    candidates = [(a, b) for a in range(1, switches + 1) for b in range(a + 1, switches + 1) if (a, b) not in taken]
    rng.shuffle(candidates)
    # Spread the chords: no switch gets more links than the average rounded up (3 at least).
    cap = max(3, math.ceil(degree))
    for a, b in candidates:
        if len(links) >= wanted:
            break
        if degrees[a] >= cap or degrees[b] >= cap:
            continue
        links.append((a, b))
        degrees[a] += 1
        degrees[b] += 1
    return Mesh(switches, tuple(links))  # type: ignore[arg-type]


def _octets(i: int) -> str:
    return f"{i // 256}.{i % 256}"


def _mac(switch: int, port: int) -> str:
    return f"02:52:{switch // 256:02x}:{switch % 256:02x}:00:{port:02x}"


def topology(m: Mesh) -> dict[str, Any]:
    """The lab topology document of ``m``."""
    return {
        "switches": [{"name": f"s{i}", "dpid": i, "trunk": TRUNK} for i in range(1, m.switches + 1)],
        "hosts": [{"name": f"h{i}", "addresses": [f"172.{16 + i // 256}.{i % 256}.100/24"],
                   "gateway": f"172.{16 + i // 256}.{i % 256}.1"} for i in range(1, m.switches + 1)],
        "links": [{"name": f"s{i}-h{i}", "ends": [f"s{i}:1", f"h{i}"]} for i in range(1, m.switches + 1)]
        + [{"name": f"s{a}-s{b}", "ends": [f"s{a}:{m.port(a, k)}", f"s{b}:{m.port(b, k)}"]}
           for k, (a, b) in enumerate(m.links)],
    }


_OSPF_LINK = """interface eth{port}
 ip ospf network point-to-point
 ip ospf hello-interval 1
 ip ospf dead-interval 3
 ip ospf cost 10
"""


def config(m: Mesh) -> dict[str, Any]:
    """The routeflow config document of ``m``: one FRR OSPF VM per switch."""
    vms = []
    for i in range(1, m.switches + 1):
        host_net = f"172.{16 + i // 256}.{i % 256}"
        interfaces = [{"name": "eth1", "port": 1, "mac": _mac(i, 1), "addresses": [f"{host_net}.1/24"]}]
        ospf = ["interface eth1\n ip ospf passive\n"]
        for k, link in enumerate(m.links):
            if i in link:
                port = m.port(i, k)
                own = 1 if i == link[0] else 2
                interfaces.append({"name": f"eth{port}", "port": port, "mac": _mac(i, port),
                                   "addresses": [f"10.{_octets(k)}.{own}/24"]})
                ospf.append(_OSPF_LINK.format(port=port))
        ospf.append(f"router ospf\n ospf router-id 10.255.{_octets(i)}\n"
                    " timers throttle spf 0 50 500\n network 0.0.0.0/0 area 0\n")
        vms.append({"name": f"r{i}", "dpid": i, "trunk": {"port": TRUNK}, "engine": "frr", "daemons": ["ospfd"],
                    "loopback": [f"10.255.{_octets(i)}/32"], "interfaces": interfaces,
                    "engine_config": "".join(ospf)})
    return {"rfvs": {"bridge": "rfvs", "dpid": 0x7266}, "vms": vms}


def write(directory: Path, switches: int, degree: float, seed: int = 1) -> Mesh:
    """Write ``topology.yaml`` and ``routeflow.yaml`` of a generated mesh into ``directory``."""
    m = mesh(switches, degree, seed)
    directory.mkdir(parents=True, exist_ok=True)
    header = (f"# generated: routeflow lab generate --switches {switches} --degree {degree:g} --seed {seed}\n"
              f"# {switches} switches, {len(m.links)} links between them (see routeflow.lab.generate)\n")
    (directory / "topology.yaml").write_text(header + yaml.safe_dump(topology(m), sort_keys=False, width=200))
    (directory / "routeflow.yaml").write_text(header + yaml.safe_dump(config(m), sort_keys=False, width=200))
    return m
