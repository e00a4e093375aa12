"""Medians, spreads and percentiles: pure, no dependencies beyond the standard library."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence


def percentile(values: Iterable[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation between ranks (numpy's default).

    NaN for no values.
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0..100")
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@dataclass(frozen=True)
class Summary:
    """A figure measured ``n`` times: its median and spread (min-max and interquartile range)."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        data = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not data:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, 0)
        return cls(median(data), min(data), max(data), percentile(data, 25), percentile(data, 75), len(data))

    @property
    def ok(self) -> bool:
        return self.n > 0

    def to_json(self) -> dict[str, float | int | None]:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"median": clean(self.median), "min": clean(self.low), "max": clean(self.high),
                "q1": clean(self.q1), "q3": clean(self.q3), "n": self.n}


def ratio(a: Summary | None, b: Summary | None) -> float:
    """``a``'s median over ``b``'s; NaN when either is missing or ``b`` is zero."""
    if a is None or b is None or not a.ok or not b.ok or b.median == 0:
        return float("nan")
    return a.median / b.median


def longest_run(sorted_ints: Sequence[int]) -> int:
    """Length of the longest run of consecutive integers in an ascending sequence."""
    best = run = 0
    previous: int | None = None
    for x in sorted_ints:
        run = run + 1 if previous is not None and x == previous + 1 else 1
        best = max(best, run)
        previous = x
    return best


def runs(sorted_ints: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs of an ascending integer sequence as (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for x in sorted_ints:
        if out and x == out[-1][1] + 1:
            out[-1] = (out[-1][0], x)
        else:
            out.append((x, x))
    return out


def curve_latencies(samples: Sequence[tuple[float, int]], n: int, t_start: float, t_end: float,
                    points: int = 500) -> list[float]:
    """Per-route latencies derived from a growth curve, in seconds.

    ``samples`` are (time, how many of the ``n`` routes are done) pairs from
    periodic polls, ascending in time. Route ``k`` (0-based, in submission
    order) is taken as submitted at ``t_start + (t_end - t_start) * (k + 0.5) / n``
    (spread evenly over the submitting command's runtime) and done at the
    first sample whose count exceeds ``k`` (FIFO). Evaluated for ``points``
    routes spread evenly over 0..n-1; routes never seen done are left out.
    """
    if n <= 0 or not samples:
        return []
    step = max(1, n // points)
    out = []
    i = 0
    for k in range(0, n, step):
        while i < len(samples) and samples[i][1] <= k:
            i += 1
        if i == len(samples):
            break
        submitted = t_start + (t_end - t_start) * (k + 0.5) / n
        out.append(max(0.0, samples[i][0] - submitted))
    return out


def curve_delays(first: Sequence[tuple[float, int]], second: Sequence[tuple[float, int]], n: int,
                 points: int = 500) -> list[float]:
    """Per-route delays between two growth curves of the same ``n`` routes, in seconds.

    Both are (time, routes done) samples ascending in time, e.g. routes in a VM's FIB
    and flows in its switch. Route ``k`` (FIFO at both stages) reaches the first stage
    at the first ``first`` sample counting more than ``k`` and the second at the first
    such ``second`` sample; its delay is the difference (0 if sampling saw the second
    stage first). Evaluated for ``points`` routes spread evenly over 0..n-1; routes not
    seen at both stages are left out.
    """
    if n <= 0 or not first or not second:
        return []
    step = max(1, n // points)
    out = []
    i = j = 0
    for k in range(0, n, step):
        while i < len(first) and first[i][1] <= k:
            i += 1
        while j < len(second) and second[j][1] <= k:
            j += 1
        if i == len(first) or j == len(second):
            break
        out.append(max(0.0, second[j][0] - first[i][0]))
    return out


def probe_losses(sent: Sequence[float], reply: Sequence[float | None], events: Sequence[float]) -> dict[str, Any]:
    """Losses of a fixed-rate probe stream, per phase between ``events`` (same clock as ``sent``).

    Phase ``i`` runs from ``events[i]`` to the next event (``-1``: before the first).
    Per phase: probes lost, ``loss_ms`` = lost x the median send interval, and
    ``outage_ms`` = the longest run of consecutive lost probes, from the first lost
    probe's send time to the next answered probe's send time.
    """
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    interval = median(gaps) if gaps else float("nan")
    phases: dict[int, dict[str, float]] = {i: {"lost": 0, "loss_ms": 0.0, "outage_ms": 0.0}
                                           for i in range(-1, len(events))}
    lost = [i for i, r in enumerate(reply) if r is None]
    for a, b in runs(lost):
        phase = max([k for k, e in enumerate(events) if e <= sent[a]], default=-1)
        n = b - a + 1
        end = sent[b + 1] if b + 1 < len(sent) else sent[b] + interval
        phases[phase]["lost"] += n
        phases[phase]["loss_ms"] += n * interval * 1000
        phases[phase]["outage_ms"] = max(phases[phase]["outage_ms"], (end - sent[a]) * 1000)
    return {"interval_ms": interval * 1000, "sent": len(sent), "received": len(sent) - len(lost), "phases": phases}


def probe_rtts(sent: Sequence[float], reply: Sequence[float | None], start: float,
               end: float) -> tuple[list[float], int]:
    """RTTs in ms of the probes of a fixed-rate stream sent within ``[start, end)``, and how
    many of those were lost (same clock as ``sent``)."""
    rtts, lost = [], 0
    for s, r in zip(sent, reply):
        if start <= s < end:
            if r is None:
                lost += 1
            else:
                rtts.append((r - s) * 1000)
    return rtts, lost
