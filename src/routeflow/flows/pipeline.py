"""The OpenFlow pipeline of a routeflow datapath, declared once.

Table ids and priority bands appear nowhere else.

``CONTROL`` classifies every packet entering a switch port: routing-protocol
and neighbour-discovery traffic and packets addressed to the router go to the
virtual router (slow path); frames addressed to the router's MAC on their
ingress port continue to ``FIB``; everything else is dropped, as a router
would. ``FIB`` holds one flow per route and per resolved neighbour, longest
prefix first; a packet with no route goes to the virtual router, which answers
it (ICMP unreachable) or resolves the neighbour.

A datapath shared by several virtual routers (multiplexing) gives each its own
routing context: its own FIB table (:func:`fib_table`), which only frames
entering its ports (or VLANs of a port) reach, admitted in ``CONTROL`` by port,
VLAN and router MAC. Routes of two contexts never meet, so tenants may use the
same prefixes.

Every "to the virtual router" decision continues in ``SLOW_PATH``, which says
how packets reach it: to the controller, which relays them to the VM NIC
(packet-in, packet-out), or, where the datapath has a trunk to the RFVS,
tagged with their ingress port as VLAN id and sent down the trunk, with no
controller in the path. Frames coming back up the trunk are untagged onto the
port their tag names (at ``PRIO_TRUNK`` in ``CONTROL``).
"""

from __future__ import annotations

from typing import NamedTuple


class TableSpec(NamedTuple):
    table_id: int
    name: str
    description: str


CONTROL = TableSpec(0, "control", "slow-path classification and router-MAC admission")
FIB = TableSpec(1, "fib", "longest-prefix-match routes and connected hosts")
#: The last table: a goto only leads forward, and every FIB table goes on to it (Open
#: vSwitch keeps table 254 for itself).
SLOW_PATH = TableSpec(253, "slow_path", "to the virtual router: via the controller or the trunk")

#: The FIB tables of a datapath's further routing contexts (multiplexing: one per VM
#: sharing it, after the first, whose FIB is ``FIB``) follow it.
FIB_CONTEXT_BASE = FIB.table_id + 1
#: Routing contexts one datapath can hold: FIB tables end where SLOW_PATH begins.
MAX_CONTEXTS = SLOW_PATH.table_id - FIB.table_id


def fib_table(context: int) -> int:
    """The FIB table of routing context ``context`` (0: the first VM's, ``FIB``)."""
    return FIB.table_id + context


#: RFVS bridges have one table: VM NICs to and from trunks, the rest to the controller.
RFVS_TABLE = 0

# Priorities in CONTROL.
PRIO_TRUNK = 500
PRIO_TRUNK_DROP = 450
PRIO_DISCOVERY = 420
PRIO_SLOW_PATH = 400
PRIO_ROUTER_MAC = 200

# Priorities in SLOW_PATH.
PRIO_TO_TRUNK = 100
PRIO_TO_CONTROLLER = 0

# Priorities in the RFVS table.
PRIO_RFVS_MAPPING = 300
PRIO_RFVS_WIRE = 250
PRIO_RFVS_TRUNK = 200
PRIO_RFVS_TRUNK_DROP = 100
PRIO_RFVS_RELAY = 0

# Priorities in FIB: base + prefix length, so longer prefixes win.
PRIO_FIB_BASE = 1000
PRIO_FIB_MISS = 0


_FIB_PRIORITIES = tuple(PRIO_FIB_BASE + n for n in range(129))


def fib_priority(prefixlen: int) -> int:
    # Shared int objects: a large FIB would otherwise hold one per flow.
    return _FIB_PRIORITIES[prefixlen]
