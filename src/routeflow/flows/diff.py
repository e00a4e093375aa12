"""Differences between two tables of a datapath, as changes to apply or text to report."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, TypeVar

from routeflow.model import Flow, FlowKey, Group, Table, format_flow, format_group
from routeflow.protocol.messages import TableMod

K = TypeVar("K")
V = TypeVar("V")


def diff_tables(dpid: int, installed: Table, desired: Table) -> TableMod:
    """The TableMod that turns ``installed`` into ``desired`` (empty if equal)."""
    add, modify, delete = _compare(installed.flows, desired.flows)
    group_add, group_modify, group_delete = _compare(installed.groups, desired.groups)
    return TableMod(
        dpid=dpid,
        add=tuple(sorted(add, key=_key)),
        modify=tuple(sorted(modify, key=_key)),
        delete=tuple(sorted(delete)),
        group_add=tuple(sorted(group_add, key=_gid)),
        group_modify=tuple(sorted(group_modify, key=_gid)),
        group_delete=tuple(sorted(group_delete)),
    )


def _compare(installed: Mapping[K, V], desired: Mapping[K, V]) -> tuple[list[V], list[V], list[K]]:
    """What turns ``installed`` into ``desired``: values to add, values to modify, keys to delete."""
    add: list[V] = []
    modify: list[V] = []
    for key, value in desired.items():
        have = installed.get(key)
        if have is None:
            add.append(value)
        elif have != value:
            modify.append(value)
    return add, modify, [key for key in installed if key not in desired]


def is_empty(mod: TableMod) -> bool:
    return not (mod.add or mod.modify or mod.delete or mod.group_add or mod.group_modify or mod.group_delete)


class _Deviations:
    """Where one table, read as a stream of flows, differs from a pivot table.

    Holds only the differences (key -> the table's flow, None where it lacks
    a pivot key) and a shallow copy of the pivot's index to tick keys off, never
    the table itself. Of two flows with the same key, the later wins.
    """

    def __init__(self, pivot: dict[FlowKey, Flow]) -> None:
        self._pivot = pivot
        self._unseen = dict(pivot)
        self.flows: dict[FlowKey, Flow | None] = {}
        self.count = 0

    def feed(self, flows: Iterable[Flow]) -> None:
        pivot, unseen, deviations = self._pivot, self._unseen, self.flows
        for flow in flows:
            self.count += 1
            key = flow.key
            have = unseen.pop(key, None)
            if have is None:
                have = pivot.get(key)  # not in the pivot, or a key seen before
            if flow == have:
                deviations.pop(key, None)
            else:
                deviations[key] = flow

    def close(self) -> None:
        for key in self._unseen:
            self.flows[key] = None
        self._unseen = {}


class TableComparison:
    """Compares an expected table with a switch's, both read as streams, through a pivot.

    The pivot is any table believed close to both (the server's copy of what
    the switch holds): each side is compared with it as it streams by and
    only the differences are kept, from which those between the two sides
    follow exactly. A million-flow comparison then costs the differences plus
    two copies of the pivot's index, not two million-flow tables. The pivot
    only decides the cost: an empty one gives the same result.

    Call :meth:`expect` and :meth:`expect_groups` first, then :meth:`feed` the
    switch's table part by part as it is dumped, then :meth:`lines`.
    """

    def __init__(self, pivot: Table | None = None) -> None:
        # A snapshot: the caller's table may change while the dump streams in.
        self._pivot: dict[FlowKey, Flow] = dict(pivot.flows) if pivot is not None else {}
        self._expected: _Deviations | None = None
        self._actual: _Deviations | None = None
        self._expected_groups: dict[int, Group] = {}
        self._groups: dict[int, Group] = {}

    @property
    def flows_seen(self) -> int:
        """Flows of the switch's table fed so far."""
        return self._actual.count if self._actual is not None else 0

    def expect(self, flows: Iterable[Flow]) -> TableComparison:
        """The expected flows, all of them in one stream."""
        assert self._expected is None, "expect() once"
        self._expected = _Deviations(self._pivot)
        self._expected.feed(flows)
        self._expected.close()
        self._actual = _Deviations(self._pivot)
        return self

    def expect_groups(self, groups: Iterable[Group]) -> TableComparison:
        self._expected_groups.update((g.group_id, g) for g in groups)
        return self

    def feed(self, flows: Iterable[Flow], groups: Iterable[Group] = ()) -> TableComparison:
        """A part of the switch's table."""
        assert self._actual is not None, "expect() first"
        self._actual.feed(flows)
        self._groups.update((g.group_id, g) for g in groups)
        return self

    def lines(self, where: str) -> list[str]:
        """Human-readable lines: what is missing, wrong or stale on the datapath."""
        assert self._expected is not None and self._actual is not None, "expect() first"
        self._actual.close()
        expected, actual, pivot = self._expected.flows, self._actual.flows, self._pivot
        missing: list[Flow] = []
        wrong: list[tuple[Flow, Flow]] = []
        stale: list[Flow] = []
        for key in expected.keys() | actual.keys():
            want = expected[key] if key in expected else pivot.get(key)
            have = actual[key] if key in actual else pivot.get(key)
            if have is None:
                if want is not None:
                    missing.append(want)
            elif want is None:
                stale.append(have)
            elif have != want:
                wrong.append((have, want))
        lines = [f"{where}: missing flow {format_flow(f)}" for f in sorted(missing, key=_key)]
        lines += [f"{where}: wrong flow {format_flow(have)} (expected {format_flow(want)})"
                  for have, want in sorted(wrong, key=_first_key)]
        lines += [f"{where}: stale flow {format_flow(f)}" for f in sorted(stale, key=_key)]
        expected_groups, actual_groups = self._expected_groups, self._groups
        for gid, grp in sorted(expected_groups.items(), key=_first):
            have_group = actual_groups.get(gid)
            if have_group is None:
                lines.append(f"{where}: missing group {format_group(grp)}")
            elif have_group != grp:
                lines.append(f"{where}: wrong group {format_group(have_group)} (expected {format_group(grp)})")
        lines += [f"{where}: stale group {format_group(g)}" for gid, g in sorted(actual_groups.items(), key=_first)
                  if gid not in expected_groups]
        return lines


def describe_differences(where: str, actual: Table, expected: Table) -> list[str]:
    """Human-readable lines: what is missing, stale or different on a datapath."""
    comparison = TableComparison().expect(expected.flows.values()).expect_groups(expected.groups.values())
    return comparison.feed(actual.flows.values(), actual.groups.values()).lines(where)


def _first(item: tuple[Any, ...]) -> Any:
    return item[0]


def _key(flow: Flow) -> FlowKey:
    return flow.key


def _first_key(pair: tuple[Flow, Flow]) -> FlowKey:
    return pair[0].key


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
