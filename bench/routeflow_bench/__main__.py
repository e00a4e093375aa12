"""Run routeflow's benchmarks and print one table: ``python -m routeflow_bench``;
``make bench`` runs it as ``bench/run.py``.

    .venv/bin/python -m routeflow_bench              # everything, default sizes
    .venv/bin/python -m routeflow_bench --quick      # the smoke run: small N, few repeats
    .venv/bin/python -m routeflow_bench --only table1 --repeat 5
    .venv/bin/python -m routeflow_bench --only install --sizes 1000,10000,100000

Each benchmark brings up what it needs while holding /run/routeflow-stack.lock
(released between benchmarks) and removes all of it afterwards, even on failure.
The JSON goes to bench/results/bench-<UTC time>.json (and latest.json).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from routeflow.harness import LOCK_HELD_ENV
from routeflow_bench import (
    api,
    bgp,
    churn,
    controller_failover,
    failover,
    faucet,
    faucet_bgp,
    install,
    join,
    recovery,
    resilience,
    table1,
    tls,
)
from routeflow_bench.common import WORK_DIR, Context, leftovers, remove_prefixed, snapshot, stack_lock
from routeflow_bench.report import Row, format_table, write_json

BENCHMARKS = {"table1": table1, "install": install, "bgp": bgp, "recovery": recovery, "faucet": faucet,
              "faucet-bgp": faucet_bgp, "tls": tls, "resilience": resilience, "api": api, "failover": failover,
              "controller-failover": controller_failover, "churn": churn, "join": join}
RESULTS = WORK_DIR / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--sizes", default="", help="route counts for install/faucet (default 1000,10000,100000; "
                                               "--quick 1000) and bgp (default 100000; --quick 1000)")
    p.add_argument("--repeat", type=int, default=0, help="repeats per figure (default 5, --quick 2)")
    p.add_argument("--quick", action="store_true", help="smoke mode: small N, few repeats")
    p.add_argument("--no-lock", action="store_true",
                   help="do not take /run/routeflow-stack.lock (the caller holds it, e.g. via flock(1))")
    p.add_argument("--profile", action="store_true",
                   help="install: py-spy the routeflow processes during the largest size")
    p.add_argument("--faucet-max", type=int, default=100_000,
                   help="largest N fed to FAUCET (default 100000)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/bench-<time>.json)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def _git_state() -> dict[str, object]:
    """The commit measured and whether src/ had uncommitted changes (read-only git)."""
    root = WORK_DIR.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "src"], capture_output=True,
                               text=True).stdout
        return {"commit": head.strip(), "src_changed_files": len(dirty.splitlines())}
    except OSError:
        return {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (timeout(1), a background kill) unwinds like Ctrl-C, so every teardown runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.geteuid() != 0:
        print("the benchmarks need root (namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    given = [int(s) for s in args.sizes.split(",") if s]
    sizes = given or ([1000] if args.quick else [1000, 10000, 100000])
    bgp_sizes = given or ([1000] if args.quick else [100_000])
    repeat = args.repeat or (2 if args.quick else 5)
    if args.no_lock:  # our caller holds the stack lock: the stacks we bring up must not wait for it
        os.environ[LOCK_HELD_ENV] = "1"
    run_dir = Path(tempfile.mkdtemp(prefix="routeflow-bench-"))
    ctx = Context(quick=args.quick, repeat=repeat, sizes=sizes, run_dir=run_dir, lock=not args.no_lock,
                  profile=args.profile, faucet_max=args.faucet_max, bgp_sizes=bgp_sizes)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows: list[Row] = []
    failed = False
    durations = {}
    print(f"routeflow bench: {', '.join(names)}; sizes {sizes}; repeat {repeat}; logs in {run_dir}", flush=True)
    for name in names:
        t = time.monotonic()
        with stack_lock(ctx.lock and getattr(BENCHMARKS[name], "NEEDS_LOCK", True)):
            before = snapshot()
            try:
                rows += BENCHMARKS[name].run(ctx)
            except Exception as exc:  # one benchmark failing must not hide the others
                failed = True
                traceback.print_exc()
                rows.append(Row(name, "(benchmark failed)", status="failed", note=f"{type(exc).__name__}: {exc}"))
            finally:
                remove_prefixed()
                extra = leftovers(before)
            if extra:
                failed = True
                rows.append(Row(name, "(teardown)", status="failed", note="left behind: " + ", ".join(extra)))
        durations[name] = round(time.monotonic() - t, 1)
        print(f"  {name}: {durations[name]:.0f} s", flush=True)
    meta = {"started": started, "git": _git_state(), "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "argv": sys.argv, "sizes": sizes, "repeat": repeat, "quick": args.quick, "durations_s": durations}
    git = meta["git"]
    title = (f"routeflow benchmarks, {started} ({'quick' if args.quick else 'full'}; repeat {repeat}; "
             f"commit {str(git.get('commit', '?'))[:10]}"
             + (f" + {git['src_changed_files']} uncommitted src files" if git.get("src_changed_files") else "") + ")")
    print()
    print(format_table(rows, title))
    profile = install.profile_summary(ctx.raw.get("install", {}))
    if profile:
        print("\n" + profile)
    out = args.out or RESULTS / f"bench-{started.replace(':', '')}.json"
    write_json(out, rows, meta, ctx.raw)
    (RESULTS / "latest.json").parent.mkdir(parents=True, exist_ok=True)
    if out.parent == RESULTS:
        (RESULTS / "latest.json").write_text(out.read_text())
    print(f"\nJSON: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
