import math

import pytest
from routeflow_bench.stats import (
    Summary,
    curve_delays,
    curve_latencies,
    longest_run,
    median,
    percentile,
    probe_losses,
    probe_rtts,
    ratio,
    runs,
)


def test_percentile_interpolates_like_numpy():
    data = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert percentile(data, 0) == 1
    assert percentile(data, 100) == 10
    assert percentile(data, 50) == 5.5
    assert percentile(data, 90) == pytest.approx(9.1)
    assert percentile(data, 99) == pytest.approx(9.91)
    assert percentile([7], 90) == 7


def test_percentile_ignores_order_and_rejects_out_of_range():
    assert percentile([3, 1, 2], 50) == 2
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_median_even_and_odd():
    assert median([5, 1, 3]) == 3
    assert median([4, 1, 3, 2]) == 2.5


def test_summary_spread_and_json():
    s = Summary.of([10, 12, 11, 50, 9])
    assert (s.median, s.low, s.high, s.n) == (11, 9, 50, 5)
    assert (s.q1, s.q3) == (10, 12)
    assert s.to_json() == {"median": 11.0, "min": 9.0, "max": 50.0, "q1": 10.0, "q3": 12.0, "n": 5}


def test_summary_of_nothing_and_nan():
    s = Summary.of([float("nan")])
    assert not s.ok and s.n == 0
    assert s.to_json()["median"] is None


def test_ratio_of_medians():
    assert ratio(Summary.of([2, 4, 6]), Summary.of([2])) == 2
    assert math.isnan(ratio(Summary.of([1]), Summary.of([0])))
    assert math.isnan(ratio(None, Summary.of([1])))


def test_runs_of_consecutive_integers():
    assert runs([1, 2, 3, 7, 9, 10]) == [(1, 3), (7, 7), (9, 10)]
    assert longest_run([1, 2, 3, 7, 9, 10]) == 3
    assert runs([]) == [] and longest_run([]) == 0


def test_curve_latencies_fifo_and_even_submission():
    # 4 routes submitted over 0..4 s (route k at k + 0.5); done counts polled each second.
    samples = [(1.0, 0), (2.0, 1), (3.0, 2), (6.0, 4)]
    lat = curve_latencies(samples, 4, 0.0, 4.0, points=4)
    assert lat == [1.5, 1.5, 3.5, 2.5]


def test_curve_latencies_leaves_out_routes_never_done():
    assert curve_latencies([(1.0, 1)], 3, 0.0, 0.0, points=3) == [1.0]
    assert curve_latencies([], 3, 0.0, 1.0) == []


def test_probe_losses_split_by_events():
    # probes every 1 ms from t=0; 10 lost after the cut at 0.0205, 3 after the restore at 0.0605.
    sent = [i / 1000 for i in range(100)]
    lost = set(range(21, 31)) | {71, 72, 73}
    reply = [None if i in lost else t + 0.0005 for i, t in enumerate(sent)]
    result = probe_losses(sent, reply, [0.0205, 0.0605])
    assert result["interval_ms"] == pytest.approx(1.0)
    assert (result["sent"], result["received"]) == (100, 87)
    cut, restore = result["phases"][0], result["phases"][1]
    assert cut["lost"] == 10 and cut["loss_ms"] == pytest.approx(10.0) and cut["outage_ms"] == pytest.approx(10.0)
    assert restore["lost"] == 3 and restore["outage_ms"] == pytest.approx(3.0)
    assert result["phases"][-1]["lost"] == 0


def test_probe_losses_trailing_losses_and_no_events():
    sent = [i / 1000 for i in range(60)]
    reply = [t if i < 50 else None for i, t in enumerate(sent)]
    result = probe_losses(sent, reply, [])
    assert result["phases"][-1]["lost"] == 10
    assert result["phases"][-1]["outage_ms"] == pytest.approx(10.0)


def test_curve_delays_pairs_routes_by_rank():
    fib = [(0.0, 0), (1.0, 5), (2.0, 10)]
    flows = [(0.5, 0), (1.5, 2), (2.5, 5), (3.5, 10)]
    # routes 0-1: FIB at 1.0, switch at 1.5; 2-4: 1.0 -> 2.5; 5-9: 2.0 -> 3.5
    assert curve_delays(fib, flows, 10, points=10) == [0.5, 0.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]


def test_curve_delays_clamps_and_stops_at_unseen_routes():
    # The switch poll saw route 0 before the FIB poll did: delay 0, not negative.
    assert curve_delays([(2.0, 1)], [(1.0, 1)], 1) == [0.0]
    # Routes 3..9 never reached the switch: left out.
    assert curve_delays([(1.0, 10)], [(2.0, 3)], 10, points=10) == [1.0, 1.0, 1.0]
    assert curve_delays([], [(1.0, 1)], 1) == []
    assert curve_delays([(1.0, 1)], [(1.0, 1)], 0) == []


def test_curve_delays_samples_evenly():
    first = [(0.0, 1000)]
    second = [(float(k), k + 1) for k in range(1000)]
    delays = curve_delays(first, second, 1000, points=100)
    assert len(delays) == 100 and delays[:3] == [0.0, 10.0, 20.0]


def test_probe_rtts_window():
    sent = [0.0, 0.01, 0.02, 0.03, 0.04]
    reply = [0.001, None, 0.023, 0.032, 0.05]
    rtts, lost = probe_rtts(sent, reply, 0.01, 0.04)
    assert rtts == pytest.approx([3.0, 2.0]) and lost == 1
    assert probe_rtts(sent, reply, 1.0, 2.0) == ([], 0)
