"""The REST API, its OpenAPI document and the metrics, on a real aiohttp server (loopback,
an ephemeral port) over an RF-Server whose NIB the core fills from controller and client
reports; no switch, no VM."""

import asyncio
import json

import jsonschema
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from routeflow.config.loader import http_address_problem, parse_config
from routeflow.errors import ConfigError
from routeflow.model import Fib, Interface, Neighbour, NextHop, PortDesc, Route
from routeflow.protocol.messages import DatapathJoin, DumpTable, FibDelta, FibSnapshot, TableDump
from routeflow.server import api
from routeflow.server.api import CHUNK, ENDPOINTS, PREFIX, allowed, build_app, openapi_document
from routeflow.server.service import RFServer

CONFIG = parse_config({
    "vms": [{"name": "rA", "dpid": 1, "engine": "none", "interfaces": [
        {"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]},
        {"name": "eth2", "port": 2, "addresses": ["172.31.2.1/24"]},
    ]}],
})
PORTS = (PortDesc(1, "s1-eth1", "aa:00:00:00:00:01", True), PortDesc(2, "s1-eth2", "aa:00:00:00:00:02", False))
#: More routes than one streamed chunk, so paging crosses chunk boundaries.
ROUTES = tuple(Route(f"10.{i // 256}.{i % 256}.0/24", (NextHop("eth1", "172.31.1.2"),), proto="bgp")
               for i in range(CHUNK + 500))
FIB = Fib(
    (Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",)),
     Interface("eth2", "02:00:00:00:00:02", True, ("172.31.2.1/24",))),
    (Route("172.31.1.0/24", (NextHop("eth1"),)), *ROUTES),
    (Neighbour("eth1", "172.31.1.2", "0a:00:00:00:00:01"),),
)


def filled_server() -> RFServer:
    server = RFServer(CONFIG)
    core = server.core
    core.on_controller_up()
    (dump,) = [o.msg for o in core.on_datapath_join(DatapathJoin(1, PORTS)) if isinstance(o.msg, DumpTable)]
    core.on_table_dump(TableDump(dump.request_id, 1, (), ()))
    core.on_fib_snapshot("rA", FibSnapshot(FIB))
    core.reconcile()
    return server


def served(check):
    """Run ``check(client, server)`` against the API of a filled server."""
    async def main():
        server = filled_server()
        async with TestClient(TestServer(build_app(server))) as client:
            await check(client, server)
    asyncio.run(main())


async def get_json(client, path, status=200):
    response = await client.get(PREFIX + path)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return json.loads(await response.read())


def validator(schema_name: str):
    document = openapi_document(ENDPOINTS)
    return jsonschema.Draft202012Validator({"components": document["components"],
                                            "$ref": f"#/components/schemas/{schema_name}"})


def test_every_endpoint_answers_as_its_openapi_schema_says():
    async def check(client, server):
        for ep in ENDPOINTS:
            path = ep.path.replace("{dpid}", "0x1").replace("{name}", "rA")
            validator(ep.schema).validate(await get_json(client, path))
        document = await get_json(client, "/openapi.json")
        jsonschema.Draft202012Validator.check_schema(document["components"]["schemas"]["Vm"])
        assert set(document["paths"]) == {PREFIX + ep.path for ep in ENDPOINTS}
    served(check)


def test_datapaths_vms_and_mappings_say_what_the_nib_holds():
    async def check(client, server):
        (dp, rfvs) = (await get_json(client, "/datapaths"))["datapaths"]
        assert dp["dpid"] == "0x1" and dp["mirrored_by"] == "rA" and dp["connected"]
        assert [(p["port"], p["up"]) for p in dp["ports"]] == [(1, True), (2, False)]
        installed = server.core.nib.datapaths[1].installed
        assert dp["flow_count"] == len(installed.flows) > len(ROUTES)
        assert not rfvs["connected"]
        vm = await get_json(client, "/vms/rA")
        assert vm["route_count"] == len(FIB.routes) and vm["neighbour_count"] == 1 and "routes" not in vm or not vm["routes"]
        mappings = (await get_json(client, "/mappings"))["mappings"]
        assert [(m["vm"], m["name"], m["dpid"], m["port"]) for m in mappings] == [("rA", "eth1", "0x1", 1),
                                                                                 ("rA", "eth2", "0x1", 2)]
    served(check)


def test_routes_stream_whole_and_page_by_offset_limit_and_filter():
    async def check(client, server):
        whole = await get_json(client, "/vms/rA/routes")
        assert whole["route_count"] == len(FIB.routes)
        assert sorted(r["prefix"] for r in whole["routes"]) == sorted(r.prefix for r in FIB.routes)
        bgp = next(r for r in whole["routes"] if r["prefix"] == "10.0.0.0/24")
        assert bgp == {"prefix": "10.0.0.0/24", "type": "unicast", "proto": "bgp",
                       "nexthops": [{"ifname": "eth1", "gateway": "172.31.1.2"}]}
        every = [r["prefix"] for r in whole["routes"]]
        page = await get_json(client, f"/vms/rA/routes?offset={CHUNK - 3}&limit=10")
        assert [r["prefix"] for r in page["routes"]] == every[CHUNK - 3:CHUNK + 7]
        matching = [p for p in every if "10.9." in p]
        found = await get_json(client, "/vms/rA/routes?q=10.9.&offset=5&limit=100")
        assert [r["prefix"] for r in found["routes"]] == matching[5:105]
        assert (await get_json(client, "/vms/rA/routes?limit=0"))["routes"] == []
        assert (await get_json(client, "/vms/rA/routes?offset=999999"))["routes"] == []
    served(check)


def test_flows_stream_with_fields_and_text():
    async def check(client, server):
        flows = await get_json(client, "/datapaths/1/flows?q=ipv4_dst=10.0.5.0/24")
        (flow,) = flows["flows"]
        assert flow["table"] == 1 and flow["match"]["ipv4_dst"] == "10.0.5.0/24"
        assert "output:1" in flow["actions"] and flow["text"].startswith("table=1,")
        whole = await get_json(client, "/datapaths/0x1/flows")
        assert len(whole["flows"]) == whole["flow_count"] == len(server.core.nib.datapaths[1].installed.flows)
    served(check)


def test_unknown_or_malformed_names_are_clear_errors():
    async def check(client, server):
        assert (await get_json(client, "/vms/rZ", 404))["error"] == "no VM 'rZ'"
        assert (await get_json(client, "/vms/rZ/routes", 404))["error"] == "no VM 'rZ'"
        assert (await get_json(client, "/datapaths/0x99/flows", 404))["error"] == "no datapath 0x99"
        assert "not a datapath id" in (await get_json(client, "/datapaths/zz", 400))["error"]
        assert "integers" in (await get_json(client, "/vms/rA/routes?limit=x", 400))["error"]
        assert "negative" in (await get_json(client, "/vms/rA/routes?offset=-1", 400))["error"]
    served(check)


def test_verify_without_a_controller_reports_it():
    async def check(client, server):
        reply = await get_json(client, "/verify")
        assert not reply["ok"] and any("cannot read its FIB" in d for d in reply["differences"])
    served(check)


def test_events_are_numbered_paged_and_long_polled():
    async def check(client, server):
        server.events.on_message("controller", "c", DatapathJoin(1, PORTS))
        server.events.on_message("client", "rA", FibDelta(routes_del=("10.0.0.0/24",)))
        got = await get_json(client, "/events")
        assert [e["kind"] for e in got["events"]] == ["datapath_up", "routes"]
        assert got["events"][1]["vm"] == "rA" and "1 withdrawn" in got["events"][1]["text"]
        assert (await get_json(client, f"/events?since={got['last']}"))["events"] == []
        waiting = asyncio.ensure_future(get_json(client, f"/events?since={got['last']}&wait=5"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        server.events.record("port_down", "port 2 down", dpid=1)
        assert [e["kind"] for e in (await waiting)["events"]] == ["port_down"]
    served(check)


def test_metrics_read_the_nib_and_count_route_to_flow_latency():
    async def check(client, server):
        server.metrics.fib_changed("rA", 10.0)
        server.metrics.tables_sent(["rA"], 10.02)
        server.metrics.fib_changed("rA", 11.0)
        server.metrics.tables_sent([], 12.0)  # a change that made no flow change is not counted later
        server.metrics.tables_sent(["rA"], 13.0)
        response = await client.get("/metrics")
        assert response.status == 200 and response.content_type == "text/plain"
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(await response.text()) for s in family.samples}
        dp = (("dp_id", "0x1"), ("dp_name", "rA"))
        assert samples[("routeflow_dp_status", dp)] == 1
        assert samples[("routeflow_port_status", (*dp, ("port", "2"), ("port_name", "s1-eth2")))] == 0
        assert samples[("routeflow_vm_routes", (("vm", "rA"),))] == len(FIB.routes)
        assert samples[("routeflow_dp_flows", dp)] == len(server.core.nib.datapaths[1].installed.flows)
        assert samples[("routeflow_route_to_flow_seconds_count", ())] == 1
        assert samples[("routeflow_route_to_flow_seconds_bucket", (("le", "0.025"),))] == 1
        assert samples[("routeflow_peers_connected", (("role", "controller"),))] == 0
    served(check)


def test_only_loopback_goes_without_a_token():
    assert allowed("127.0.0.1", "", None) and allowed("::1", "", None)
    assert not allowed("192.0.2.1", "", None) and not allowed("192.0.2.1", "Bearer x" * 3, None)
    token = "t" * 20
    assert allowed("192.0.2.1", f"Bearer {token}", token)
    assert not allowed("192.0.2.1", f"Bearer {token}x", token) and not allowed(None, "", token)


def test_http_config_is_checked_where_it_is_read(tmp_path):
    assert parse_config({"vms": CONFIG_VMS}).http.listen == "127.0.0.1:8080"
    assert parse_config({"vms": CONFIG_VMS, "http": {"listen": "off"}}).http.listen is None
    with pytest.raises(ConfigError, match=r"http\.listen: '192\.0\.2\.1:80' is not on this host"):
        parse_config({"vms": CONFIG_VMS, "http": {"listen": "192.0.2.1:80"}})
    assert parse_config({"vms": CONFIG_VMS, "http": {"listen": "[::]:8080", "token_file": "/x"}}).http.token_file
    with pytest.raises(ConfigError, match=r"http\.listen: '127\.0\.0\.1' is not an HTTP address"):
        parse_config({"vms": CONFIG_VMS, "http": {"listen": "127.0.0.1"}})
    with pytest.raises(ConfigError, match=r"http\.lisen"):
        parse_config({"vms": CONFIG_VMS, "http": {"lisen": "127.0.0.1:1"}})
    assert http_address_problem("host.example:80") == "'host.example' is not an IP address"
    short = tmp_path / "token"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16"):
        api.read_token(str(short), "routeflow.yaml")


CONFIG_VMS = [{"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]}]


def test_status_says_where_the_http_surface_is(capsys):
    from routeflow.cli import render

    document = asyncio.run(filled_server().status(detail=False))
    assert document["server"]["http"] == "127.0.0.1:8080"
    render._print_status(document, flows=False, routes=False)
    out = capsys.readouterr().out
    assert "HTTP: REST API http://127.0.0.1:8080/api/v1/, metrics http://127.0.0.1:8080/metrics" in out


def test_the_operator_reads_events_through_the_api_and_is_told_when_it_cannot(capsys):
    from routeflow.cli import main
    from routeflow.operator_client import ServerUnreachable, events

    async def check(client, server):
        server.events.record("datapath_up", "datapath 0x1 connected with 2 ports", dpid=1)
        server.events.record("port_down", "datapath 0x1 port 2 (s1-eth2) down", dpid=1)
        http = f"127.0.0.1:{client.server.port}"
        loop = asyncio.get_running_loop()
        got = await loop.run_in_executor(None, lambda: list(events(http, since=1)))
        assert [e["kind"] for e in got] == ["port_down"]
        code = await loop.run_in_executor(None, main, ["events", "--http", http])
        assert code == 0
    served(check)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2"] and "port_down" in lines[1]
    with pytest.raises(ServerUnreachable, match="http://127.0.0.1:9"):
        list(events("127.0.0.1:9"))
    assert main(["events", "--http", "127.0.0.1:9"]) == 3


def test_streamed_structs_are_the_entries_status_gives():
    import msgspec

    from routeflow.server.status import neighbour_entry, route_entry

    for route in (*FIB.routes[:3], Route("0.0.0.0/0", type="blackhole")):
        assert msgspec.json.decode(msgspec.json.encode(route)) == route_entry(route)
    assert msgspec.json.decode(msgspec.json.encode(FIB.neighbours[0])) == neighbour_entry(FIB.neighbours[0])


def test_the_grafana_dashboard_queries_only_metrics_the_server_exposes():
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[3] / "contrib/grafana/routeflow-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b(routeflow_\w+)", target["expr"])}

    async def check(client, server):
        server.metrics.fib_changed("rA", 1.0)
        server.metrics.tables_sent(["rA"], 1.1)
        server.metrics.peer_connections.labels("client").inc()
        from routeflow.protocol.messages import ControllerStats
        stats = ControllerStats(0, {1: 3}, {1: 2}, {1: {"arp": 3}}, {1: 0}, {1: 0})
        text = server.metrics.exposition(stats, server.peer_counts()).decode()
        exposed = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
        assert queried and queried <= exposed, queried - exposed
    served(check)


def test_the_web_view_is_served_and_its_events_stream():
    async def check(client, server):
        page = await client.get("/")
        assert page.status == 200 and "text/html" in page.content_type
        body = await page.text()
        assert 'src="/static/view.js"' in body and 'id="topology"' in body
        for name, kind in (("view.js", "javascript"), ("view.css", "text/css")):
            static = await client.get(f"/static/{name}")
            assert static.status == 200 and kind in static.content_type
        server.events.record("datapath_up", "before the stream")
        stream = await client.get(PREFIX + "/events/stream")
        assert stream.content_type == "text/event-stream"
        server.events.record("port_down", "datapath 0x1 port 2 (s1-eth2) down", dpid=1)
        lines = [await asyncio.wait_for(stream.content.readline(), 5) for _ in range(3)]
        assert lines[0] == b"id: 2\n" and lines[2] == b"\n"
        event = json.loads(lines[1].removeprefix(b"data: "))
        assert event["kind"] == "port_down" and event["dpid"] == "0x1"
        stream.close()
    served(check)


TOKEN = "0123456789abcdef0123"


def test_reload_exists_only_with_a_token_and_needs_it_from_loopback_too(tmp_path):
    path = tmp_path / "routeflow.yaml"
    path.write_text(yaml.safe_dump({"vms": [{"name": "rA", "dpid": 1, "engine": "none", "interfaces": [
        {"name": "eth1", "port": 1, "addresses": ["172.31.1.1/24"]},
        {"name": "eth2", "port": 2, "addresses": ["172.31.2.1/24"]}]}]}))

    async def main():
        server = filled_server()
        server.config_path = path
        async with TestClient(TestServer(build_app(server))) as client:
            assert (await client.post(PREFIX + "/reload")).status in (404, 405)  # no token: no such endpoint
        async with TestClient(TestServer(build_app(server, TOKEN))) as client:
            assert (await client.post(PREFIX + "/reload")).status == 401
            wrong = await client.post(PREFIX + "/reload", headers={"Authorization": "Bearer nope"})
            assert wrong.status == 401
            auth = {"Authorization": f"Bearer {TOKEN}"}
            response = await client.post(PREFIX + "/reload", headers=auth)
            assert response.status == 200, await response.text()
            body = json.loads(await response.read())
            validator("Reload").validate(body)
            assert body["ok"] and body["changes"] == []
            path.write_text("vms: [{name: rA, dpid: 1, interfaces: [{name: eth1, port: 0}]}]\n")
            response = await client.post(PREFIX + "/reload", headers=auth)
            assert response.status == 422
            body = json.loads(await response.read())
            assert not body["ok"] and any("vms[0].interfaces[0].port" in p for p in body["problems"])
            assert server.core.config.vm("rA").port_of("eth2") == 2  # nothing changed
            document = await get_json(client, "/openapi.json")
            assert "post" in document["paths"][PREFIX + "/reload"]
            metrics = await (await client.get("/metrics")).text()
            reloads = {s.labels["result"]: s.value for f in text_string_to_metric_families(metrics)
                       if f.name == "routeflow_reloads" for s in f.samples if s.name.endswith("_total")}
            assert reloads == {"applied": 1.0, "refused": 1.0}
    asyncio.run(main())
