import pytest

from routeflow.flows.diff import describe_differences, diff_tables, is_empty
from routeflow.model import CONTROLLER, Flow, Group, Table, format_flow, match, output


def table(*flows: Flow, groups=()) -> Table:
    return Table(flows={f.key: f for f in flows}, groups={g.group_id: g for g in groups})


A = Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (output(1),))
A2 = Flow(1, 1024, match(eth_type=0x800, ipv4_dst="10.0.0.0/24"), (output(2),))
B = Flow(1, 1032, match(eth_type=0x800, ipv4_dst="10.0.0.1"), (CONTROLLER,))
G = Group(7, "select", (((output(1),)), ((output(2),))))


def test_equal_tables_need_no_change():
    assert is_empty(diff_tables(1, table(A, B, groups=[G]), table(A, B, groups=[G])))


def test_add_modify_delete():
    mod = diff_tables(1, table(A, B), table(A2, groups=[G]))
    assert mod.add == () and mod.modify == (A2,) and mod.delete == (B.key,)
    assert mod.group_add == (G,) and mod.group_delete == ()
    back = diff_tables(1, table(A2, groups=[G]), table())
    assert back.delete == (A2.key,) and back.group_delete == (7,)


def test_describe_names_missing_stale_and_wrong():
    lines = describe_differences("rA", table(A2, B), table(A, groups=[G]))
    text = "\n".join(lines)
    assert "wrong flow" in text and "stale flow" in text and "missing group" in text
    assert len(lines) == 3


def test_large_mods_are_split_with_groups_first_and_last():
    from routeflow.flows.diff import split_table_mod
    from routeflow.protocol.messages import TableMod

    adds = tuple(Flow(1, 1024, match(eth_type=0x800, ipv4_dst=f"10.0.{i}.0/24"), (output(1),)) for i in range(7))
    mod = TableMod(1, add=adds, delete=(B.key,), group_add=(G,), group_delete=(9,))
    parts = split_table_mod(mod, limit=3)
    assert [len(p.add) + len(p.delete) for p in parts] == [3, 3, 2]
    assert parts[0].group_add == (G,) and all(not p.group_add for p in parts[1:])
    assert parts[-1].group_delete == (9,) and all(not p.group_delete for p in parts[:-1])
    assert sum((p.add for p in parts), ()) == adds and parts[-1].delete == (B.key,)
    assert split_table_mod(mod, limit=100) == [mod]


def test_comparison_fed_in_parts_equals_the_whole_comparison():
    from routeflow.flows.diff import TableComparison

    actual = table(A2, B, Flow(1, 1, (), (output(9),)), groups=[G])
    expected = table(A, Flow(1, 2, (), ()), groups=[Group(8, "select", ((output(3),),))])
    parts = TableComparison().expect(expected.flows.values()).expect_groups(expected.groups.values())
    flows = list(actual.flows.values())
    parts.feed(flows[:1]).feed(flows[1:], actual.groups.values())
    assert parts.lines("rA") == describe_differences("rA", actual, expected)
    assert parts.flows_seen == 3 and len(parts.lines("rA")) == 6


C = Flow(1, 1016, match(eth_type=0x800, ipv4_dst="10.0.0.0/16"), (output(3),))
C2 = Flow(1, 1016, match(eth_type=0x800, ipv4_dst="10.0.0.0/16"), (output(4),))
D = Flow(0, 400, match(eth_type=0x806), (CONTROLLER,))


@pytest.mark.parametrize("pivot", [(), (A,), (A2, B), (A, B, C, D), (A2, C2), (B, C2, D)])
@pytest.mark.parametrize("expected,actual", [
    ((A, B), (A, B)),
    ((A, B, C), (A2, C2, D)),
    ((), (A, B)),
    ((A, C, D), ()),
    ((A, A2, B), (A2, B)),  # the later flow of a key wins
    ((A2, B, A), (A, B, B)),
])
def test_the_pivot_changes_the_cost_never_the_result(pivot, expected, actual):
    from routeflow.flows.diff import TableComparison

    want = {f.key: f for f in expected}
    have = {f.key: f for f in actual}
    truth = [f"rA: missing flow {format_flow(f)}" for k, f in sorted(want.items()) if k not in have]
    truth += [f"rA: wrong flow {format_flow(have[k])} (expected {format_flow(f)})"
              for k, f in sorted(want.items()) if k in have and have[k] != f]
    truth += [f"rA: stale flow {format_flow(f)}" for k, f in sorted(have.items()) if k not in want]
    comparison = TableComparison(table(*pivot)).expect(iter(expected))
    comparison.feed(actual[:1]).feed(actual[1:])
    assert comparison.lines("rA") == truth
