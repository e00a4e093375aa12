"""A fake OpenFlow 1.3 switch table for unit tests: apply a Table to a packet
and report where it goes, instead of asserting on raw flow lists."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from routeflow.model import Flow, Table


@dataclass
class Outcome:
    """What happened to a packet: out of which ports with which headers, or to the controller."""

    outputs: list[dict[str, object]] = field(default_factory=list)
    controller: bool = False
    ttl_decremented: bool = False
    #: For select groups: one outputs list per bucket (the switch picks one).
    buckets: list[list[dict[str, object]]] = field(default_factory=list)

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
    outputs = []
    pkt = dict(packet)
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
            outcome.buckets = [_run_actions(b, pkt, Outcome(), table) for b in grp.buckets]
        else:
            raise AssertionError(f"unknown action {action}")
    return outputs


def forward(table: Table, packet: dict[str, object]) -> Outcome:
    """Run ``packet`` (OXM field names to values) through the pipeline from table 0."""
    outcome = Outcome()
    table_id: int | None = 0
    while table_id is not None:
        flow = _lookup(table, table_id, packet)
        if flow is None:
            return outcome  # OpenFlow 1.3 table miss: drop
        outcome.outputs += _run_actions(flow.actions, packet, outcome, table)
        table_id = flow.goto
    return outcome
