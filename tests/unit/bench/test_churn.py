"""The churn benchmark's pure parts: the baseline's flow lines and the sampler's arithmetic."""

import pytest
from routeflow_bench.churn import MACHINE, Sampler, flow_text

from routeflow.lab.churn import ChurnRoute


def test_baseline_flows_match_like_an_lpm_entry_and_delete_strictly_by_match():
    route = ChurnRoute("1.0.4.0/22", "192.0.2.1")
    assert flow_text(route, True) == ("table=0,priority=1022,ip,nw_dst=1.0.4.0/22,"
                                      "actions=dec_ttl,mod_dl_dst:02:00:00:00:00:01,output:1\n")
    assert flow_text(route, False) == "table=0,priority=1022,ip,nw_dst=1.0.4.0/22\n"


def _sampler() -> Sampler:
    sampler = Sampler({}, {}, interval=0.5)
    sampler.cpu = [(10.0, {"server": 1.0, MACHINE: 100.0}), (10.5, {"server": 1.1, MACHINE: 100.5}),
                   (11.0, {"server": 1.3, MACHINE: 101.0}), (20.0, {"server": 9.0, MACHINE: 200.0})]
    sampler.samples = [(10.0, {"server": 1000}), (10.5, {"server": 1500}), (11.0, {"server": 1600})]
    return sampler


def test_cpu_share_between_the_samples_nearest_the_window():
    shares = _sampler().cpu_share(10.1, 10.9)
    assert shares["server"] == pytest.approx(30.0) and shares[MACHINE] == pytest.approx(100.0)
    assert _sampler().cpu_share(30.0, 31.0) == {}


def test_rss_growth_over_the_second_half():
    assert _sampler().growth_kb("server", 10.0, 11.0) == 100
    assert _sampler().growth_kb("client", 10.0, 11.0) == 0
