"""End to end on the real stack, rftest1: one switch, one VM, no routing protocol."""

from __future__ import annotations

import pytest

from routeflow.harness import ping, running, wait_for

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def rftest1(tmp_path_factory):
    with running("rftest1", tmp_path_factory.mktemp("rftest1")) as stack:
        yield stack


def test_rftest1_hosts_ping_through_flows_from_connected_routes_and_arp(rftest1):
    wait_for(lambda: ping("b1", "172.31.2.2", timeout=0.5).ok, 30, 0.2)
    rftest1.wait_verify_clean()
    before = rftest1.packet_ins().get("icmp", 0)
    result = ping("b1", "172.31.2.2", count=10, interval=0.05)
    assert result.ok
    assert rftest1.packet_ins().get("icmp", 0) == before
    flows = rftest1.flows("0x1")
    assert any("ipv4_dst=172.31.2.2 " in f and "dec_nw_ttl" in f for f in flows)
