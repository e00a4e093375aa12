"""Differences between two tables of a datapath, as changes to apply or text to report."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, TypeVar

from routeflow.flows.model import Flow, FlowKey, Group, Table, format_flow, format_group
from routeflow.protocol.messages import TableMod

K = TypeVar("K")
V = TypeVar("V")


def diff_tables(dpid: int, installed: Table, desired: Table) -> TableMod:
    """The TableMod that turns ``installed`` into ``desired`` (empty if equal)."""
    add, modify = [], []
    for key, flow in desired.flows.items():
        have = installed.flows.get(key)
        if have is None:
            add.append(flow)
        elif have != flow:
            modify.append(flow)
    delete = [key for key in installed.flows if key not in desired.flows]
    group_add, group_modify = [], []
    for gid, grp in desired.groups.items():
        have_group = installed.groups.get(gid)
        if have_group is None:
            group_add.append(grp)
        elif have_group != grp:
            group_modify.append(grp)
    group_delete = [gid for gid in installed.groups if gid not in desired.groups]
    return TableMod(
        dpid=dpid,
        add=tuple(sorted(add, key=_key)),
        modify=tuple(sorted(modify, key=_key)),
        delete=tuple(sorted(delete)),
        group_add=tuple(sorted(group_add, key=_gid)),
        group_modify=tuple(sorted(group_modify, key=_gid)),
        group_delete=tuple(sorted(group_delete)),
    )


def is_empty(mod: TableMod) -> bool:
    return not (mod.add or mod.modify or mod.delete or mod.group_add or mod.group_modify or mod.group_delete)


class TableComparison:
    """Compares a switch's table, fed in parts as it is dumped, with the expected one.

    Holds the expected table and the differences, never the whole actual table.
    """

    def __init__(self, expected: Table) -> None:
        self._expected = expected
        self._unseen = dict(expected.flows)
        self._groups: dict[int, Group] = {}
        self._wrong: list[tuple[FlowKey, Flow, Flow]] = []
        self._stale: list[Flow] = []
        self.flows_seen = 0

    def feed(self, flows: Iterable[Flow], groups: Iterable[Group] = ()) -> TableComparison:
        for flow in flows:
            self.flows_seen += 1
            want = self._unseen.pop(flow.key, None)
            if want is None:
                self._stale.append(flow)
            elif want != flow:
                self._wrong.append((flow.key, flow, want))
        self._groups.update((g.group_id, g) for g in groups)
        return self

    def lines(self, where: str) -> list[str]:
        """Human-readable lines: what is missing, wrong or stale on the datapath."""
        lines = [f"{where}: missing flow {format_flow(f)}" for _, f in sorted(self._unseen.items(), key=_first)]
        lines += [f"{where}: wrong flow {format_flow(have)} (expected {format_flow(want)})"
                  for _, have, want in sorted(self._wrong, key=_first)]
        lines += [f"{where}: stale flow {format_flow(f)}" for f in sorted(self._stale, key=_key)]
        expected, actual = self._expected.groups, self._groups
        for gid, grp in sorted(expected.items(), key=_first):
            have_group = actual.get(gid)
            if have_group is None:
                lines.append(f"{where}: missing group {format_group(grp)}")
            elif have_group != grp:
                lines.append(f"{where}: wrong group {format_group(have_group)} (expected {format_group(grp)})")
        lines += [f"{where}: stale group {format_group(g)}" for gid, g in sorted(actual.items(), key=_first)
                  if gid not in expected]
        return lines


def describe_differences(where: str, actual: Table, expected: Table) -> list[str]:
    """Human-readable lines: what is missing, stale or different on a datapath."""
    return TableComparison(expected).feed(actual.flows.values(), actual.groups.values()).lines(where)


def _first(item: tuple[Any, ...]) -> Any:
    return item[0]


def _key(flow: Flow) -> FlowKey:
    return flow.key


def _gid(grp: Group) -> int:
    return grp.group_id


def apply_changes(dpid: int, installed: Table, flows: Mapping[FlowKey, Flow | None],
                  groups: Mapping[int, Group | None]) -> TableMod:
    """The TableMod for changes to some keys of the desired table; updates ``installed`` to match.

    Only the changed keys are looked at, so the cost follows the size of the
    change, not of the table.
    """
    add, modify, delete = _apply(installed.flows, flows)
    group_add, group_modify, group_delete = _apply(installed.groups, groups)
    return TableMod(dpid=dpid, add=tuple(add), modify=tuple(modify), delete=tuple(delete),
                    group_add=tuple(group_add), group_modify=tuple(group_modify), group_delete=tuple(group_delete))


#: Most flow changes in one TableMod: the controller decodes a message whole,
#: and a million-flow one would stall it past the switch's echo timeout.
MAX_FLOWS_PER_MOD = 50_000


def split_table_mod(mod: TableMod, limit: int = MAX_FLOWS_PER_MOD) -> list[TableMod]:
    """``mod`` as TableMods of at most ``limit`` flow changes, in an order that
    keeps it safe: groups are added in the first and deleted in the last."""
    changes = [("add", f) for f in mod.add] + [("modify", f) for f in mod.modify] + [("delete", k) for k in mod.delete]
    if len(changes) <= limit:
        return [mod]
    parts = []
    for start in range(0, len(changes), limit):
        chunk = changes[start : start + limit]
        first, last = start == 0, start + limit >= len(changes)
        parts.append(TableMod(
            dpid=mod.dpid,
            add=tuple(f for kind, f in chunk if kind == "add"),  # type: ignore[misc]
            modify=tuple(f for kind, f in chunk if kind == "modify"),  # type: ignore[misc]
            delete=tuple(k for kind, k in chunk if kind == "delete"),  # type: ignore[misc]
            group_add=mod.group_add if first else (),
            group_modify=mod.group_modify if first else (),
            group_delete=mod.group_delete if last else (),
        ))
    return parts


def _apply(installed: dict[K, V], changes: Mapping[K, V | None]) -> tuple[list[V], list[V], list[K]]:
    """Apply changes (None: removal) to ``installed``; what was added, modified and deleted."""
    add: list[V] = []
    modify: list[V] = []
    delete: list[K] = []
    for key, value in changes.items():
        have = installed.get(key)
        if value is None:
            if have is not None:
                delete.append(key)
                del installed[key]
        elif have is None:
            add.append(value)
            installed[key] = value
        elif have != value:
            modify.append(value)
            installed[key] = value
    return add, modify, delete
