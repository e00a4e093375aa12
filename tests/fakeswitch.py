"""A fake OpenFlow 1.3 switch for unit tests: apply a Table to a packet and report
where it goes, instead of asserting on raw flow lists (FAUCET's ``FakeOFTable``
idea, faucetsdn/faucet clib/fakeoftable.py). :class:`FakeSwitch` also takes the
TableMods the controller would send it, with the switch's semantics."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from routeflow.model import Flow, FlowKey, Group, PortDesc, Table
from routeflow.protocol.messages import TableDump, TableMod


@dataclass
class Outcome:
    """What happened to a packet: out of which ports with which headers, or to the controller."""

    outputs: list[dict[str, object]] = field(default_factory=list)
    controller: bool = False
    ttl_decremented: bool = False
    #: For select groups: one outputs list per bucket (the switch picks one).
    buckets: list[list[dict[str, object]]] = field(default_factory=list)
    #: The entries the packet matched, table by table.
    entries: list[FlowKey] = field(default_factory=list)

    @property
    def dropped(self) -> bool:
        return not (self.outputs or self.controller or self.buckets)

    @property
    def ports(self) -> list[object]:
        return [o["port"] for o in self.outputs]


def _matches(flow: Flow, packet: dict[str, object]) -> bool:
    for fieldname, value in flow.match:
        have = packet.get(fieldname)
        if have is None:
            return False
        if fieldname.endswith(("_dst", "_src")) and isinstance(value, str) and "/" in value:
            if ipaddress.ip_address(have) not in ipaddress.ip_network(value):
                return False
        elif have != value:
            return False
    return True


def _lookup(table: Table, table_id: int, packet: dict[str, object]) -> Flow | None:
    candidates = [f for f in table.flows.values() if f.table == table_id and _matches(f, packet)]
    if not candidates:
        return None
    best = max(f.priority for f in candidates)
    winners = [f for f in candidates if f.priority == best]
    # Overlapping flows of equal priority are undefined in OpenFlow unless they do the same.
    assert len({(f.actions, f.goto) for f in winners}) == 1, f"ambiguous overlapping flows: {winners}"
    return winners[0]


def _run_actions(actions, packet, outcome: Outcome, table: Table) -> list[dict[str, object]]:
    """Apply ``actions`` to ``packet`` (in place: what they change, the next table sees)."""
    outputs = []
    pkt = packet
    for action in actions:
        name = action[0]
        if name == "output":
            outputs.append({**pkt, "port": action[1]})
        elif name == "controller":
            outcome.controller = True
        elif name == "dec_nw_ttl":
            outcome.ttl_decremented = True
        elif name == "set_field":
            assert action[1] != "vlan_vid" or "vlan_vid" in pkt, "set_field vlan_vid on an untagged frame"
            pkt[action[1]] = action[2]
        elif name == "push_vlan":
            assert "vlan_vid" not in pkt, "this fake switch carries one tag at most"
            pkt["vlan_vid"] = 0x1000  # OFPVID_PRESENT, VLAN 0
        elif name == "pop_vlan":
            assert "vlan_vid" in pkt, "pop_vlan on an untagged frame"
            del pkt["vlan_vid"]
        elif name == "group":
            grp = table.groups[action[1]]
            assert grp.type == "select"
            outcome.buckets = [_run_actions(b, dict(pkt), Outcome(), table) for b in grp.buckets]
        else:
            raise AssertionError(f"unknown action {action}")
    return outputs


def forward(table: Table, packet: dict[str, object]) -> Outcome:
    """Run ``packet`` (OXM field names to values) through the pipeline from table 0."""
    outcome = Outcome()
    packet = dict(packet)
    table_id: int | None = 0
    while table_id is not None:
        flow = _lookup(table, table_id, packet)
        if flow is None:
            return outcome  # OpenFlow 1.3 table miss: drop
        outcome.entries.append(flow.key)
        outcome.outputs += _run_actions(flow.actions, packet, outcome, table)
        table_id = flow.goto
    return outcome


class FakeSwitch:
    """A datapath as OpenFlow 1.3 leaves it after the TableMods sent to it.

    An ADD of an entry already there replaces it and clears its counters (OpenFlow
    1.3.5, 6.4); a MODIFY_STRICT keeps them, and changes nothing if the entry is not
    there; a group ADD of an id in use or a MODIFY of one that is not is refused
    (OFPGMFC_GROUP_EXISTS, OFPGMFC_UNKNOWN_GROUP), as is a flow whose group is
    missing; deleting a group deletes the entries that use it.
    """

    def __init__(self, dpid: int, ports: dict[int, PortDesc] | None = None) -> None:
        self.dpid = dpid
        self.ports: dict[int, PortDesc] = dict(ports or {})
        self.flows: dict[FlowKey, Flow] = {}
        self.groups: dict[int, Group] = {}
        #: Packets each entry has matched, as the switch counts them.
        self.packets: dict[FlowKey, int] = {}
        #: What the switch refused: each would be an OFPT_ERROR to the controller.
        self.errors: list[str] = []

    @property
    def table(self) -> Table:
        return Table(dict(self.flows), dict(self.groups))

    def forward(self, packet: dict[str, object]) -> Outcome:
        """Where ``packet`` goes; the entries it matched count it."""
        outcome = forward(self.table, packet)
        for key in outcome.entries:
            self.packets[key] = self.packets.get(key, 0) + 1
        return outcome

    def apply(self, mod: TableMod) -> None:
        """``mod`` in the order the controller sends it: groups the new flows use
        first, the groups nothing uses any more last."""
        assert mod.dpid == self.dpid, f"a TableMod for {mod.dpid:#x} sent to {self.dpid:#x}"
        for group in mod.group_add:
            if group.group_id in self.groups:
                self.errors.append(f"OFPGMFC_GROUP_EXISTS: group {group.group_id}")
            else:
                self.groups[group.group_id] = group
        for group in mod.group_modify:
            if group.group_id not in self.groups:
                self.errors.append(f"OFPGMFC_UNKNOWN_GROUP: group {group.group_id}")
            else:
                self.groups[group.group_id] = group
        for flow in mod.add:
            if self._groups_missing(flow):
                continue
            self.flows[flow.key] = flow
            self.packets[flow.key] = 0
        for flow in mod.modify:
            if flow.key in self.flows and not self._groups_missing(flow):
                self.flows[flow.key] = flow
        for key in mod.delete:
            self.flows.pop(key, None)
            self.packets.pop(key, None)
        for group_id in mod.group_delete:
            self.groups.pop(group_id, None)
            for key in [k for k, f in self.flows.items() if ("group", group_id) in f.actions]:
                del self.flows[key]
                self.packets.pop(key, None)

    def dump(self, request_id: int, error: str = "") -> TableDump:
        """The reply to a dump of the whole table (nothing but ``error`` if it failed)."""
        if error:
            return TableDump(request_id, self.dpid, (), (), error)
        return TableDump(request_id, self.dpid, tuple(self.flows.values()), tuple(self.groups.values()))

    def _groups_missing(self, flow: Flow) -> bool:
        missing = [a[1] for a in flow.actions if a[0] == "group" and a[1] not in self.groups]
        if missing:
            self.errors.append(f"OFPBAC_BAD_OUT_GROUP: {flow} uses group {missing[0]}")
        return bool(missing)
