"""The server core with two VMs on one datapath: the switch holds the union of their
tables, each VM's changes touch only its routing context, and verify checks both."""

import asyncio

from tests.fakeswitch import FakeSwitch
from tests.tenants import CONFIG, SHARED_PORT, TENANTS, fib, ports

from routeflow.config.loader import parse_config
from routeflow.flows import pipeline as P
from routeflow.flows.diff import TableComparison
from routeflow.model import Fib, Flow, NextHop, Route
from routeflow.protocol.messages import (
    DatapathJoin,
    DumpTable,
    FibDelta,
    FibSnapshot,
    LinkChange,
    LinkState,
    MappingSeen,
    PortChange,
    RelayMap,
    TableDump,
    TableMod,
)
from routeflow.server.core import CONTROLLER, ServerCore
from routeflow.server.status import status_document
from routeflow.server.verify import differences


def messages(out, kind, to=None):
    return [o.msg for o in out if isinstance(o.msg, kind) and (to is None or o.to == to)]


def core_and_switch() -> tuple[ServerCore, FakeSwitch]:
    core = ServerCore(CONFIG)
    core.on_controller_up()
    switch = FakeSwitch(1, ports())
    (dump,) = messages(core.on_datapath_join(DatapathJoin(1, tuple(switch.ports.values()))), DumpTable)
    core.on_table_dump(TableDump(dump.request_id, 1, (), ()))
    return core, switch


def sync(core: ServerCore, switch: FakeSwitch) -> list[TableMod]:
    mods = messages(core.reconcile(), TableMod, CONTROLLER)
    for mod in mods:
        switch.apply(mod)
    return mods


def test_nothing_is_sent_until_every_vm_on_the_datapath_has_reported():
    core, switch = core_and_switch()
    core.on_fib_snapshot("tA", FibSnapshot(fib("tA")))
    assert sync(core, switch) == []  # tB's flows (after a restart: still on the switch) stay
    core.on_fib_snapshot("tB", FibSnapshot(fib("tB")))
    assert sync(core, switch)
    tables = {f.table for f in switch.flows}
    assert {P.FIB.table_id, P.FIB_CONTEXT_BASE} <= tables
    assert not switch.errors


def test_one_tenants_route_change_touches_only_its_own_fib_table():
    core, switch = core_and_switch()
    for name in TENANTS:
        core.on_fib_snapshot(name, FibSnapshot(fib(name)))
    sync(core, switch)
    core.on_fib_delta("tB", FibDelta(routes_set=(Route("10.7.0.0/16", (NextHop("eth2", "10.0.0.2"),)),),
                                     routes_del=("10.2.0.0/24",)))
    (mod,) = sync(core, switch)
    assert {f.table for f in (*mod.add, *mod.modify)} | {k.table for k in mod.delete} == {P.FIB_CONTEXT_BASE}
    assert len(mod.add) == 1 and len(mod.delete) == 1


def test_a_shared_port_going_down_tells_each_vm_with_a_vlan_on_it():
    core, _ = core_and_switch()
    port = ports(SHARED_PORT)[SHARED_PORT]
    out = core.on_port_change(PortChange(1, port))
    assert sorted((o.to, o.msg) for o in out) == [("tA", LinkState("eth2", False)), ("tB", LinkState("eth2", False))]


def test_the_relay_map_pairs_vlans_with_their_nics():
    core, _ = core_and_switch()
    core.on_mapping_seen(MappingSeen(CONFIG.rfvs.dpid, 21, "tB", "eth2"))
    (relay,) = messages(core.on_mapping_seen(MappingSeen(CONFIG.rfvs.dpid, 20, "tA", "eth2")), RelayMap)
    assert [(e.dpid, e.port, e.vlan, e.rfvs_port) for e in relay.entries] == [(1, 3, 10, 20), (1, 3, 20, 21)]


def test_status_shows_the_mapping_table():
    core, _ = core_and_switch()
    doc = status_document(core.nib)
    (dp,) = [d for d in doc["datapaths"] if d["dpid"] == "0x1"]
    assert dp["mirrored_by"] == "tA, tB"
    nics = {(vm["name"], i["name"]): (i["port"], i["vlan"]) for vm in doc["vms"] for i in vm["interfaces"]}
    assert nics == {("tA", "eth1"): (1, None), ("tA", "eth2"): (3, 10), ("tB", "eth1"): (2, None),
                    ("tB", "eth2"): (3, 20)}


class Sources:
    """Verify's view: the tenants' kernels and the fake switch."""

    def __init__(self, switch: FakeSwitch, fibs: dict[str, Fib]) -> None:
        self.switch, self.fibs = switch, fibs

    async def fresh_fib(self, vm: str) -> Fib:
        return self.fibs[vm]

    async def compare_table(self, dpid: int, comparison: TableComparison) -> None:
        if dpid == self.switch.dpid:
            comparison.feed(self.switch.flows.values(), self.switch.groups.values())
        else:
            comparison.feed(())


def test_verify_checks_each_tenant_and_reports_a_flow_that_belongs_to_none():
    core, switch = core_and_switch()
    fibs = {name: fib(name) for name in TENANTS}
    for name in TENANTS:
        core.on_fib_snapshot(name, FibSnapshot(fibs[name]))
    sync(core, switch)
    sources = Sources(switch, fibs)
    found, checked = asyncio.run(differences(core.nib, sources))
    assert [line for line in found if "0x1" in line] == [] and checked["datapaths"] >= 1
    # tB's kernel lost a route the switch still has; and a flow nobody asked for appears
    fibs["tB"] = Fib(fibs["tB"].interfaces, tuple(r for r in fibs["tB"].routes if r.prefix != "10.2.0.0/24"),
                     fibs["tB"].neighbours)
    stray = Flow(P.FIB_CONTEXT_BASE + 5, 100, (("eth_type", 0x0800),), ())
    switch.flows[stray.key] = stray
    found, _ = asyncio.run(differences(core.nib, sources))
    text = "\n".join(found)
    assert "10.2.0.0/24" in text and f"table={P.FIB_CONTEXT_BASE + 5}" in text


def test_a_shared_link_in_the_virtual_plane_is_one_cable_per_tenant():
    """Two switches, two tenants each, a link between them carrying both on their VLANs:
    each tenant's two NICs on it are wired to each other, and never to the other tenant's."""
    vms = []
    for dpid in (1, 2):
        for tenant, vlan in (("a", 10), ("b", 20)):
            vms.append({"name": f"{tenant}{dpid}", "dpid": dpid, "engine": "none", "routing_plane": "virtual",
                        "interfaces": [{"name": "eth1", "port": 1 if tenant == "a" else 2},
                                       {"name": "eth3", "port": 3, "vlan": vlan}]})
    core = ServerCore(parse_config({"vms": vms}))
    core.on_link_change(LinkChange(1, 3, 2, 3, True))
    core.on_link_change(LinkChange(2, 3, 1, 3, True))
    assert core.nib.virtual_links() == [(("a1", "eth3"), ("a2", "eth3")), (("b1", "eth3"), ("b2", "eth3"))]


def test_a_switch_back_with_fewer_ports_names_the_nics_left_without_one():
    core = ServerCore(CONFIG)
    core.on_controller_up()
    core.on_datapath_join(DatapathJoin(1, tuple(p for n, p in ports().items() if n != SHARED_PORT)))
    (dp,) = [d for d in status_document(core.nib)["datapaths"] if d["dpid"] == "0x1"]
    assert dp["missing_ports"] == ["tA eth2: port 3", "tB eth2: port 3"]
