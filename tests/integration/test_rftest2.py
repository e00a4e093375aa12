"""End to end on the real stack, rftest2: four switches and VMs running OSPF (FRR).

All pairs, ECMP over the diagonal, a link cut, a withdrawn route, and restarts
of the RF-Client and the RF-Controller, each ending with a clean verify; once
as the example ships (routing messages cross the physical links) and once with
every VM's routing plane virtual (they cross the RFVS, wired by discovery).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.scenarios import (
    A_B_NICS,
    cut_reroutes_and_restores,
    kill_daemon_under_ping,
    silence_reroutes_and_restores,
    virtual_links,
    wait_for_ecmp_group,
)

from routeflow.flows import pipeline as P
from routeflow.harness import CONVERGE_TIMEOUT, Stack, captured, example_variant, ping, running, wait_for
from routeflow.lab import network

pytestmark = pytest.mark.integration
#: Link-discovery probe interval of the virtual plane: a silent link is unwired after 3.5 of them.
PROBE_INTERVAL = 0.25


@pytest.fixture(scope="module", params=["physical", "virtual"])
def rftest2(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp(f"rftest2-{request.param}")
    example = "rftest2"
    if request.param == "virtual":
        example = example_variant("rftest2", run_dir / "example", {"routing_plane": "virtual"},
                                  config_settings={"discovery": {"interval": PROBE_INTERVAL}})
    with running(example, run_dir, _converged(request.param)) as stack:
        yield stack


def _converged(plane: str):
    def ready(stack: Stack) -> bool:
        return stack.all_pairs_ok() and (plane == "physical" or len(virtual_links(stack)) == 5)
    return ready


def test_rftest2_routing_messages_travel_in_the_plane_configured(rftest2):
    """Physical: OSPF hellos cross the switch-to-switch links. Virtual: discovery
    wired each VM pair across the RFVS, and no hello crosses a link."""
    virtual = rftest2.config.vms[0].routing_plane == "virtual"
    rftest2.wait_verify_clean()  # the RFVS holds every wire status shows
    hellos = captured("sA-p3", "ip proto 89")  # OSPF hellos go every second
    if virtual:
        assert ("rA:eth3", "rB:eth2") in virtual_links(rftest2)
        assert not hellos, hellos
        assert len(rftest2.status(detail=False)["links"]) == 10  # five links, both directions
    else:
        assert not virtual_links(rftest2)
        assert len(hellos) >= 2


def test_rftest2_all_pairs_through_flows(rftest2):
    before = rftest2.packet_ins().get("icmp", 0)
    results = rftest2.all_pairs(count=3, interval=0.05)
    assert all(r.ok for r in results.values()), {k: r for k, r in results.items() if not r.ok}
    assert rftest2.packet_ins().get("icmp", 0) == before
    # The router answers pings to its own addresses itself (slow path).
    assert ping("h1", "172.31.1.1").ok and ping("h1", "10.255.0.4").ok


def _tx_packets(bridge: str, port: int) -> int:
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-ports", bridge, str(port)],
                         capture_output=True, text=True, check=True).stdout
    return int(re.search(r"tx pkts=(\d+)", out)[1])


def test_rftest2_ipv6_through_flows_beside_ipv4(rftest2):
    """Dual stack: OSPFv3 routes via link-local next hops become IPv6 flows; every
    pair pings over IPv6 with no ICMPv6 packet-in; pings to a router's own
    addresses (its gateway, a remote loopback) are answered by the VM."""
    before = rftest2.packet_ins().get("icmpv6", 0)
    results = rftest2.all_pairs(count=3, interval=0.05, version=6)
    assert len(results) == 12 and all(r.ok for r in results.values()), results
    assert rftest2.packet_ins().get("icmpv6", 0) == before
    flows = rftest2.flows("0x1")
    towards_h4 = next(f for f in flows if "ipv6_dst=2001:db8:4::/64" in f)
    assert "dec_nw_ttl" in towards_h4 and "set_field:02:52:46:04:00:02->eth_dst" in towards_h4, towards_h4
    assert any("ipv6_dst=2001:db8:1::100" in f and "output:1" in f for f in flows)  # neighbour host flow
    for router_address in ("2001:db8:1::1", "2001:db8:ff::4"):
        assert ping("h1", router_address, count=2, interval=0.05).ok, router_address
    rftest2.wait_verify_clean()


def test_rftest2_ecmp_uses_both_equal_cost_paths(rftest2):
    wait_for_ecmp_group(rftest2)
    # TCP connection attempts from 200 source ports: OVS hashes TCP (not UDP)
    # ports into its select-group choice, so the flows spread over both paths.
    sender = (
        "import socket\n"
        "for port in range(42000, 42200):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "    s.bind(('172.31.2.100', port))\n"
        "    s.settimeout(0.5)\n"
        "    try:\n"
        "        s.connect(('172.31.3.100', 9))\n"
        "    except OSError:\n"
        "        pass\n"
        "    s.close()\n"
    )
    before = {port: _tx_packets("sB", port) for port in (2, 5)}
    subprocess.run(["ip", "netns", "exec", "h2", sys.executable, "-c", sender], check=True, timeout=120)
    sent = {port: _tx_packets("sB", port) - before[port] for port in (2, 5)}
    # About 100 each; OSPF hellos add a handful. Under 20 on a path means it is unused.
    assert sum(sent.values()) >= 200 and min(sent.values()) >= 20, sent


def _samples(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = stack.http("/metrics").decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


#: sA's port 3, cabled to sB: what the A-B cut takes down.
SA_PORT3 = ("routeflow_port_status", (("dp_id", "0x1"), ("dp_name", "rA"), ("port", "3"), ("port_name", "sA-p3")))


def test_rftest2_link_cut_reroutes_and_restores(rftest2):
    """...and the operator's HTTP surface follows: the REST API lists the switches, the
    port's metric turns 0 during the cut and 1 after, and the events say so."""
    datapaths = {d["dpid"]: d for d in rftest2.api("/datapaths")["datapaths"]}
    assert all(datapaths[f"{i:#x}"]["connected"] for i in range(1, 5)) and len(datapaths) == 5
    routes = rftest2.api("/vms/rA/routes?q=172.31.4.0")["routes"]
    assert [r["prefix"] for r in routes] == ["172.31.4.0/24"]
    assert rftest2.api("/openapi.json")["openapi"].startswith("3.")
    before = _samples(rftest2)
    assert before[SA_PORT3] == 1 and before[("routeflow_vm_client_connected", (("vm", "rA"),))] == 1
    since = rftest2.api("/events")["last"]
    during: dict = {}
    cut_reroutes_and_restores(rftest2, while_cut=lambda: during.update(_samples(rftest2)))
    assert during[SA_PORT3] == 0
    wait_for(lambda: _samples(rftest2)[SA_PORT3] == 1, 10, 0.2)
    kinds = {(e["kind"], e["dpid"]) for e in rftest2.api(f"/events?since={since}")["events"]}
    assert {("port_down", "0x1"), ("port_up", "0x1"), ("routes", None)} <= kinds
    after = _samples(rftest2)
    dp = (("dp_id", "0x1"), ("dp_name", "rA"))
    assert after[("routeflow_flow_mods_sent_total", dp)] > before[("routeflow_flow_mods_sent_total", dp)]
    assert after[("routeflow_route_to_flow_seconds_count", ())] > before[("routeflow_route_to_flow_seconds_count", ())]


def test_rftest2_silent_link_failure_reroutes_and_restores(rftest2):
    silence_reroutes_and_restores(rftest2, PROBE_INTERVAL)


def test_rftest2_withdrawn_route_leaves_no_stale_flow(rftest2):
    add = ["ip", "netns", "exec", "rA", "ip", "route", "add", "198.51.100.0/24", "via", "10.0.12.2"]
    subprocess.run(add, check=True)
    try:
        wait_for(lambda: any("ipv4_dst=198.51.100.0/24" in f for f in rftest2.flows("0x1")), 10, 0.1)
        rftest2.wait_verify_clean()
    finally:
        subprocess.run(["ip", "netns", "exec", "rA", "ip", "route", "del", "198.51.100.0/24"], check=True)
    wait_for(lambda: not any("198.51.100.0/24" in f for f in rftest2.flows("0x1")), 10, 0.1)
    rftest2.wait_verify_clean()


def test_rftest2_restarted_client_resyncs(rftest2):
    (pid,) = rftest2.client_pids("rB")
    os.kill(pid, signal.SIGKILL)
    # While rB's client is away its FIB changes both ways; the switch must catch up.
    subprocess.run(["ip", "netns", "exec", "rB", "ip", "route", "add", "198.51.100.0/24", "via", "10.0.12.1"],
                   check=True)
    try:
        wait_for(lambda: rftest2.client_pids("rB") and rftest2.client_pids("rB") != [pid], 30, 0.2)
        wait_for(lambda: any("198.51.100.0/24" in f for f in rftest2.flows("0x2")), 30, 0.2)
        rftest2.wait_verify_clean()
    finally:
        subprocess.run(["ip", "netns", "exec", "rB", "ip", "route", "del", "198.51.100.0/24"], check=True)
    rftest2.wait_verify_clean()


def test_rftest2_restarted_controller_resyncs(rftest2):
    rftest2.stop_controller(signal.SIGKILL)
    # Changes made while the controller is down must reach the switch after it is back.
    subprocess.run(["ip", "netns", "exec", "rC", "ip", "route", "add", "203.0.113.0/24", "via", "10.0.13.1"],
                   check=True)
    try:
        time.sleep(1.0)
        rftest2.start_controller()
        wait_for(lambda: rftest2.status()["controller_connected"], 30, 0.2)
        wait_for(lambda: any("203.0.113.0/24" in f for f in rftest2.flows("0x3")), 30, 0.2)
        rftest2.wait_verify_clean()
    finally:
        subprocess.run(["ip", "netns", "exec", "rC", "ip", "route", "del", "203.0.113.0/24"], check=True)
    rftest2.wait_verify_clean()
    wait_for(lambda: rftest2.all_pairs_ok(), 30, 0.5)



def test_rftest2_next_hop_that_never_resolves_is_visible_and_harmless(rftest2):
    # 10.0.12.99 is on rA's A-B subnet but nobody answers for it.
    subprocess.run(["ip", "netns", "exec", "rA", "ip", "route", "add", "198.51.100.0/24", "via", "10.0.12.99"],
                   check=True)
    try:
        def shown() -> bool:
            dp = next(d for d in rftest2.status(detail=False)["datapaths"] if d["dpid"] == "0x1")
            return any((u["prefix"], u["ifname"], u["gateway"]) == ("198.51.100.0/24", "eth3", "10.0.12.99")
                       for u in dp["unresolved_next_hops"])

        wait_for(shown, 10, 0.2)
        # The VM is asked to resolve it again and again, backing off (1, 2, 4 s...):
        # its ARP requests leave rA's NIC, and status counts the attempts.
        assert captured("rA-eth3", "arp and host 10.0.12.99", seconds=2.5)

        def attempts() -> int:
            dp = next(d for d in rftest2.status(detail=False)["datapaths"] if d["dpid"] == "0x1")
            return next(u["resolve_attempts"] for u in dp["unresolved_next_hops"] if u["gateway"] == "10.0.12.99")

        wait_for(lambda: attempts() >= 3, 10, 0.2)
        # Its traffic goes to the VM (which tries to resolve it); nothing else is disturbed.
        assert any("198.51.100.0/24" in f and f"actions=goto_table:{P.SLOW_PATH.table_id}" in f for f in rftest2.flows("0x1"))
        assert rftest2.all_pairs_ok()
        rftest2.wait_verify_clean()
    finally:
        subprocess.run(["ip", "netns", "exec", "rA", "ip", "route", "del", "198.51.100.0/24"], check=True)
    wait_for(lambda: not any("198.51.100.0/24" in f for f in rftest2.flows("0x1")), 10, 0.2)


def test_rftest2_next_hop_object_deleted_takes_its_flow(rftest2):
    """A route through a kernel next-hop object, as FRR installs them; deleting the object
    removes the route without an RTM_DELROUTE, and the switch must follow."""
    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", "rD", *args], check=True)

    ip("nexthop", "add", "id", "999", "via", "10.0.24.2", "dev", "eth3")
    try:
        ip("route", "add", "198.18.0.0/24", "nhid", "999")
        wait_for(lambda: any("198.18.0.0/24" in f for f in rftest2.flows("0x4")), 10, 0.1)
        rftest2.wait_verify_clean()
    finally:
        ip("nexthop", "del", "id", "999")
    wait_for(lambda: not any("198.18.0.0/24" in f for f in rftest2.flows("0x4")), 10, 0.1)
    rftest2.wait_verify_clean()


def test_rftest2_zebra_killed_and_restarted_leaves_no_stale_flow(rftest2):
    """kill -9 zebra in rD (on h1-h4's path) under a ping stream and start FRR again as
    watchfrr does (zebra, then ospfd and ospf6d: FRR 8.4's protocol daemons do not give a
    new zebra all their routes again): once rD's routes are back in its kernel, verify is
    clean within 2 s. The new zebra removes its predecessor's next-hop objects, and with
    them, silently, every route through them."""
    restart = kill_daemon_under_ping(rftest2, "rD", "zebra", "172.31.4.100")
    print(f"zebra restart: {restart}")
    assert restart.clean_after_s <= 2.0, restart
    wait_for(rftest2.all_pairs_ok, CONVERGE_TIMEOUT, 0.5)


@pytest.fixture
def browser():
    """Headless Chromium, Debian's, driven by its chromedriver: offline, nothing downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers on the network
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_rftest2_web_view_shows_the_topology_and_a_cut_link_live(rftest2, browser):
    """The web view, in a real browser: four switches with their VMs and five links; a cut
    turns its link red without a reload, and the routes page searches a VM's FIB."""
    from selenium.webdriver.common.by import By

    if rftest2.config.vms[0].routing_plane != "virtual":
        pytest.skip("links between switches are discovered in the virtual routing plane")
    browser.get(f"http://{rftest2.config.http.listen}/")

    def links(state: str) -> int:
        return len(browser.find_elements(By.CSS_SELECTOR, f"line.link[data-state={state}]"))

    def texts(selector: str) -> list[str]:
        # Read in the page in one step: the view redraws as events come, and an element
        # found in one call may be gone by the next.
        return browser.execute_script(  # type: ignore[no-any-return]
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent)", selector)

    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "g.datapath[data-state=up]")) == 4
             and links("up") == 5, 20, 0.1)
    assert sorted(texts("text.vm-label")) == ["rA", "rB", "rC", "rD"]
    wait_for(lambda: "live" in browser.find_element(By.ID, "live").text, 10, 0.1)
    network.set_link("A-B", "down", state_path=rftest2.lab_state)
    cut = time.monotonic()
    try:
        wait_for(lambda: links("down") == 1, 10, 0.05)
        seen = time.monotonic() - cut
    finally:
        network.set_link("A-B", "up", state_path=rftest2.lab_state)
    print(f"\nweb view: the cut link turned red {seen:.2f} s after the cut")
    assert seen < 2.0 and links("up") == 4
    wait_for(lambda: rftest2.all_pairs_ok() and A_B_NICS in virtual_links(rftest2), CONVERGE_TIMEOUT, 0.5)
    rftest2.wait_verify_clean()
    wait_for(lambda: links("up") == 5 and links("down") == 0, 20, 0.1)
    browser.get(f"http://{rftest2.config.http.listen}/#/vm/rA")
    search = browser.find_element(By.ID, "search")
    search.send_keys("172.31.4.")
    wait_for(lambda: texts("#table-body tr td:first-child") == ["172.31.4.0/24"], 10, 0.1)


def test_rftest2_fib_audits_found_nothing_the_events_missed(rftest2):
    """Last in the module, after the restarts and the next-hop object tests: every RF-Client
    has audited its FIB against a kernel dump, and `routeflow status` shows that no audit
    ever had to repair a route the Netlink events had missed."""
    def vms() -> list[dict]:
        done = subprocess.run([sys.executable, "-m", "routeflow", "status", "--json", "--server",
                               rftest2.server_address], capture_output=True, text=True, check=True)
        return json.loads(done.stdout)["vms"]

    # The clients audit every 30 s: each has done one by now, or does within the next period.
    wait_for(lambda: all(vm["fib_audits"] >= 1 for vm in vms()), 40, 1.0)
    assert {vm["name"]: vm["fib_repaired"] for vm in vms()} == {vm["name"]: 0 for vm in vms()}

