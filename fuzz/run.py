#!/usr/bin/env python3
"""Run routeflow's fuzz targets and print one table; ``make fuzz`` runs this.

    .venv/bin/python fuzz/run.py                          # every target, 1,000,000 cases each
    .venv/bin/python fuzz/run.py --cases 2000             # a quick pass
    .venv/bin/python fuzz/run.py --only netlink,frames --seconds 300
    .venv/bin/python fuzz/run.py --list                   # the targets and what they check

Each target runs its seed corpus, then ``--cases`` generated cases or until ``--seconds``
have passed, whichever comes first, each case within ``--deadline-ms`` (hypothesis
deadline; 20 deadlines interrupt it), the process within ``--memory-gib`` of address
space. A failure is shrunk by hypothesis; the smallest failing input is printed and
written to fuzz/crashes/<target>/ (see fuzz/README.md to make it a regression test).
Exits 1 if any target failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import engine  # noqa: E402
from fuzz.targets import TARGETS, target  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1_000_000, help="generated cases per target (default 1,000,000)")
    p.add_argument("--seconds", type=float, default=None, help="time budget per target (default: none)")
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(TARGETS)}")
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed, for a reproducible run")
    p.add_argument("--deadline-ms", type=float, default=None,
                   help=f"per-case limit (default {engine.DEADLINE_MS:g} ms)")
    p.add_argument("--memory-gib", type=float, default=engine.MEMORY_CAP / (1 << 30),
                   help="address-space cap of this process (default 2 GiB)")
    p.add_argument("--keep-going", action="store_true", help="run the other targets after a failure")
    p.add_argument("--strict", action="store_true",
                   help="known issues (a target's KnownIssues, fuzz/targets/) are failures too, not counted and passed")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    p.add_argument("--replay", nargs="+", type=Path, metavar="FILE",
                   help="check these inputs (fuzz/regressions/<target>/*.bin, fuzz/crashes/<target>/*.bin) "
                        "strictly, print what each does, and exit")
    return p.parse_args(argv)


def format_table(results: list[engine.Result]) -> str:
    rows = [("target", "cases", "seeds", "seconds", "cases/s", "failures", "known issues hit")]
    for r in results:
        known = ", ".join(f"{name} x{count:,}" for name, count in sorted(r.known.items())) or "-"
        rows.append((r.target, f"{r.cases:,}", f"{r.seeds:,}", f"{r.seconds:.1f}", f"{r.rate:,.0f}",
                     "1" if r.failure else "0", known))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def replay(paths: list[Path], deadline_ms: float | None) -> int:
    """Check each input with its target (the folder it is in); 1 if any fails."""
    logging.disable(logging.CRITICAL)
    failed = 0
    for path in paths:
        name = path.resolve().parent.name
        if name not in TARGETS:
            print(f"{path}: not in a folder named after a target ({', '.join(TARGETS)})", file=sys.stderr)
            return 2
        fuzzed = target(name)
        try:
            with engine.memory_cap():
                engine.replay(fuzzed, path, deadline_ms)
        except (Exception, engine.CaseHung) as exc:
            failed += 1
            print(f"{path}: FAILS\n" + engine.Failure(name, fuzzed.load(path.read_bytes()), exc, "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__))).describe(fuzzed.show))
        else:
            print(f"{path}: passes")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; known: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    if args.list:
        for name in names:
            print(f"{name:20} {target(name).doc}")
        return 0
    if args.replay:
        return replay(args.replay, args.deadline_ms)
    # The code under test logs every refused input: millions of lines.
    logging.disable(logging.CRITICAL)
    results = []
    with engine.memory_cap(int(args.memory_gib * (1 << 30))):
        for name in names:
            started = time.strftime("%H:%M:%S")
            print(f"[{started}] {name}: {target(name).doc}", flush=True)
            result = engine.run_target(target(name), args.cases, args.seconds, args.seed, args.deadline_ms,
                                       strict=args.strict)
            results.append(result)
            print(f"           {result.cases:,} cases in {result.seconds:.1f} s ({result.rate:,.0f}/s)"
                  + (", FAILED" if result.failure else ""), flush=True)
            for issue in target(name).known:
                if result.known.get(issue.name):
                    print(f"           known issue {issue.name} hit by {result.known[issue.name]:,} cases: "
                          f"{issue.description}", flush=True)
            if result.failure:
                print(result.failure.describe(target(name).show), flush=True)
                path = engine.crash_file(target(name), result.failure)
                print(f"input written to {path}", flush=True)
                if not args.keep_going:
                    break
    print()
    print(format_table(results))
    return 1 if any(r.failure for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
