import json

from routeflow_bench.faucet import faucet_yaml
from routeflow_bench.install import flow_file, prefix, route_batch, top_functions
from routeflow_bench.report import Row, fmt_number, fmt_summary, format_table, write_json
from routeflow_bench.stats import Summary


def test_fmt_number_significant_figures():
    assert [fmt_number(x) for x in (0.0823, 5.46, 11.04, 116.2, 15900.4, 0)] == ["0.082", "5.46", "11.0", "116",
                                                                                  "15,900", "0"]
    assert fmt_number(float("nan")) == "-" and fmt_number(None) == "-"


def test_fmt_summary():
    assert fmt_summary(Summary.of([1, 2, 3])) == "2.00 (1.00–3.00)"
    assert fmt_summary(Summary.of([4])) == "4.00"
    assert fmt_summary(None) == "-"


def rows():
    return [
        Row("table1", "slow path RTT avg", "ms", Summary.of([2.9, 2.7, 3.1]), Summary.of([0.45, 0.5]), "plain OVS",
            "RouteFlow 116 ms", note="3 runs"),
        Row("bgp", "100k over BGP", status="skipped", note="not yet: needs issue 3 (BGP peers)"),
    ]


def test_format_table_aligns_columns_and_numbers_notes():
    text = format_table(rows(), "title")
    lines = text.splitlines()
    assert lines[0] == "title"
    assert lines[1].startswith("benchmark") and "ratio" in lines[1]
    assert set(lines[2]) <= {"-", " "}
    slow = lines[3]
    assert "2.90 (2.70–3.10)" in slow and "0.475 (0.450–0.500) [plain OVS]" in slow and "6.11x" in slow
    assert slow.endswith("[1]")
    assert "SKIPPED: see note" in lines[4] and lines[4].endswith("[2]")
    assert "[2] not yet: needs issue 3 (BGP peers)" in text
    # every data row has its columns where the header has them
    assert lines[1].index("metric") == slow.index("slow path")


def test_write_json(tmp_path):
    path = write_json(tmp_path / "r" / "x.json", rows(), {"quick": True}, {"table1": {"samples": [1]}})
    data = json.loads(path.read_text())
    assert data["meta"] == {"quick": True}
    first = data["rows"][0]
    assert first["value"]["median"] == 2.9 and first["baseline"]["n"] == 2
    assert round(first["ratio"], 3) == 6.105
    assert data["rows"][1]["status"] == "skipped" and data["rows"][1]["ratio"] is None


def test_prefixes_are_distinct_and_valid():
    import ipaddress

    got = [prefix(i) for i in (0, 1, 255, 256, 65535, 65536, 999_999)]
    assert got[:3] == ["10.0.0.0/24", "10.0.1.0/24", "10.0.255.0/24"]
    assert got[4:6] == ["10.255.255.0/24", "11.0.0.0/24"]
    assert len({prefix(i) for i in range(70000)}) == 70000
    for p in got:
        ipaddress.ip_network(p)


def test_batches_and_flow_files():
    assert route_batch(2, "add") == "route add 10.0.0.0/24 via 172.31.1.2\nroute add 10.0.1.0/24 via 172.31.1.2\n"
    add = flow_file(1, "aa:bb:cc:dd:ee:ff")
    assert add.startswith("table=1,priority=1024,ip,nw_dst=10.0.0.0/24,actions=dec_ttl,")
    assert "set_field:aa:bb:cc:dd:ee:ff->eth_dst,output:1" in add
    assert flow_file(1, "x", delete=True) == "delete_strict table=1,priority=1024,ip,nw_dst=10.0.0.0/24\n"


def test_faucet_yaml_routes():
    import yaml

    doc = yaml.safe_load(faucet_yaml(2))
    assert doc["vlans"]["bench"]["routes"][1] == {"route": {"ip_dst": "10.0.1.0/24", "ip_gw": "192.168.252.1"}}
    assert "routes" not in yaml.safe_load(faucet_yaml(0))["vlans"]["bench"]


def test_top_functions_from_collapsed_stacks(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("main (cli.py:1);run (asyncio/base_events.py:2);work (a.py:3) 30\n"
                    "main (cli.py:1);run (asyncio/base_events.py:2);idle (b.py:4) 10\n")
    top = top_functions(path)
    assert top["samples"] == 40
    assert top["self"][0] == ("work (a.py:3)", 75.0)
    assert ("run (asyncio/base_events.py:2)", 100.0) not in top["inclusive"]


def test_format_table_numbers_a_repeated_note_once():
    rows = [Row("a", "x", value=Summary.of([1]), note="same"), Row("a", "y", value=Summary.of([2]), note="same")]
    lines = format_table(rows).splitlines()
    assert lines[2].endswith("[1]") and lines[3].endswith("[1]")
    assert lines[-1] == "[1] same" and "[2]" not in "\n".join(lines)
