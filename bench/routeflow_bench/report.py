"""The one table ``make bench`` prints, and the JSON it writes: pure formatting."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from routeflow_bench.stats import Summary, ratio


@dataclass
class Row:
    """One figure: routeflow's median and spread next to a baseline measured in the same run."""

    bench: str
    metric: str
    unit: str = ""
    value: Summary | None = None
    baseline: Summary | None = None
    baseline_label: str = ""
    published: str = ""
    note: str = ""
    #: "ok", "skipped" (not measured, ``note`` says why) or "failed" (``note`` has the error).
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return ratio(self.value, self.baseline)

    def to_json(self) -> dict[str, Any]:
        r = self.ratio
        return {
            "bench": self.bench, "metric": self.metric, "unit": self.unit, "status": self.status,
            "value": self.value.to_json() if self.value else None,
            "baseline": self.baseline.to_json() if self.baseline else None,
            "baseline_label": self.baseline_label,
            "ratio": None if math.isnan(r) else r,
            "published": self.published, "note": self.note, "extra": self.extra,
        }


def fmt_number(x: float | None) -> str:
    """Three significant figures or so, thousands separated; ``-`` for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a == 0:
        return "0"
    return f"{x:.3f}"


def fmt_summary(s: Summary | None) -> str:
    """``median (min–max)``, or just the median when it was measured once."""
    if s is None or not s.ok:
        return "-"
    if s.n == 1 or s.low == s.high:
        return fmt_number(s.median)
    return f"{fmt_number(s.median)} ({fmt_number(s.low)}–{fmt_number(s.high)})"


def fmt_ratio(r: float) -> str:
    if math.isnan(r):
        return "-"
    return f"{r:.3g}x" if r < 1000 else f"{r:,.0f}x"


HEADERS = ("benchmark", "metric", "unit", "routeflow median (min–max)", "baseline median (min–max)",
           "ratio", "n", "published")


def table_rows(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows:
        if row.status != "ok":
            value = f"{row.status.upper()}: see note"
        else:
            value = fmt_summary(row.value)
        n = row.value.n if row.value and row.value.ok else 0
        baseline = fmt_summary(row.baseline)
        if row.baseline_label and baseline != "-":
            baseline = f"{baseline} [{row.baseline_label}]"
        elif row.baseline_label:
            baseline = f"[{row.baseline_label}]"
        out.append((row.bench, row.metric, row.unit, value, baseline, fmt_ratio(row.ratio),
                    str(n) if n else "-", row.published or "-"))
    return out


def format_table(rows: Sequence[Row], title: str = "") -> str:
    """One plain-text table, columns aligned, each row's note numbered below it."""
    cells = table_rows(rows)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(HEADERS)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    notes: list[str] = []
    for row, c in zip(rows, cells):
        mark = ""
        if row.note:
            if row.note not in notes:  # the same note on several rows: one number
                notes.append(row.note)
            mark = f" [{notes.index(row.note) + 1}]"
        line = "  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip()
        lines.append(line + mark)
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    return "\n".join(lines)


def write_json(path: Path, rows: Sequence[Row], meta: dict[str, Any], raw: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": [r.to_json() for r in rows], "raw": raw},
                               indent=2, default=str) + "\n")
    return path
