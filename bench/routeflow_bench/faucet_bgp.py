"""A peer, side by side, on the same BGP feed: FAUCET (its own venv, see faucet.py) learns
the bgp benchmark's N prefixes over eBGP and installs them; routes per second against
routeflow's from the bgp benchmark of this run.

The feed is the bgp benchmark's (bgp.Feed): an FRR router, F1 (AS 65001), its kernel FIB
preloaded with the N prefixes, ``redistribute kernel`` to announce them all at once and
``no redistribute kernel`` to withdraw them. F1 sits on port 1 of FAUCET's switch, in
FAUCET's VLAN, and is the next hop of every route (an outbound route-map sets it).
FAUCET's BGP speaker (beka, inside the FAUCET process) listens in the root namespace,
so the session runs over a control veth (bench/topologies/bgp-faucet) instead of
across the switch. The clock runs from F1's command to the switch holding N route
flows (matches within 8.0.0.0/5), and back to none for the withdrawal.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from routeflow.harness import wait_for
from routeflow.lab.network import ROUTER_RUN_ROOT, lab_down, lab_up
from routeflow_bench.bgp import Feed, session_established
from routeflow_bench.common import TOPOLOGIES, Context, flow_count, sh
from routeflow_bench.faucet import ROUTE_MATCH, VIP, ensure_venv, faucet_running, faucet_version, faucet_yaml
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary

TOPOLOGY = TOPOLOGIES / "bgp-faucet" / "topology.yaml"
BRIDGE, PEER, PEER_AS = "fsw", "F1", 65001
#: The control veth carrying the BGP session: root end (FAUCET) and F1's end.
CONTROL, CONTROL_PEER = "bnb-fbgp", "ctl0"
SPEAKER_IP, PEER_IP, BGP_PORT = "198.18.0.1", "198.18.0.2", 9179
ROUTERS = (
    "routers:\n"
    "  bench-bgp:\n"
    "    bgp:\n"
    "      vlan: bench\n"
    "      as: 65000\n"
    f"      port: {BGP_PORT}\n"
    f"      routerid: '{VIP.split('/')[0]}'\n"
    f"      server_addresses: ['{SPEAKER_IP}']\n"
    f"      neighbor_addresses: ['{PEER_IP}']\n"
    f"      neighbor_as: {PEER_AS}\n"
    "      connect_mode: passive\n"
)
#: Give up on FAUCET when its route flow count has not moved for this long.
STALL_S = 60.0


def _control_link() -> None:
    sh(["ip", "link", "add", CONTROL, "type", "veth", "peer", "name", CONTROL_PEER, "netns", PEER])
    sh(["ip", "addr", "add", f"{SPEAKER_IP}/30", "dev", CONTROL])
    sh(["ip", "link", "set", CONTROL, "up"])
    sh(["ip", "-n", PEER, "addr", "add", f"{PEER_IP}/30", "dev", CONTROL_PEER])
    sh(["ip", "-n", PEER, "link", "set", CONTROL_PEER, "up"])


def _wait_count(done: Any, n: int, adding: bool) -> float:
    """Monotonic time FAUCET's route flows satisfy ``done``; TimeoutError once they stall."""
    last, moved = -1, time.monotonic()
    while True:
        count = flow_count(BRIDGE, ROUTE_MATCH)
        now = time.monotonic()
        if done(count):
            return now
        if count != last:
            last, moved = count, now
        elif now - moved > STALL_S:
            raise TimeoutError(f"FAUCET stalled at {count} of {n if adding else 0} route flows for {STALL_S:.0f} s")
        time.sleep(0.02)


def _timed(feed: Feed, n: int, adding: bool) -> float:
    t0 = time.monotonic()
    feed.announce(adding)
    return _wait_count((lambda c: c >= n) if adding else (lambda c: c == 0), n, adding) - t0


def run(ctx: Context) -> list[Row]:
    raw: dict[str, Any] = {"feed": "F1 (FRR bgpd): [no] redistribute kernel of N preloaded blackhole routes",
                           "sizes": {}}
    ctx.raw["faucet-bgp"] = raw
    try:
        manager = ensure_venv()
        raw["version"] = faucet_version()
    except Exception as exc:
        return [Row("faucet-bgp", "(could not install FAUCET)", status="failed", note=f"{type(exc).__name__}: {exc}")]
    work = Path(tempfile.mkdtemp(prefix="bench-faucet-bgp-", dir=ctx.run_dir))
    config = work / "faucet.yaml"
    config.write_text(faucet_yaml(0, ROUTERS))
    lab_state = work / "lab.json"
    rows: list[Row] = [
        Row(f"faucet-bgp N={n:,}", "announce: routes/s, routeflow vs FAUCET", status="skipped",
            note=f"FAUCET not run above N={ctx.faucet_max:,} (--faucet-max)")
        for n in ctx.bgp_sizes if n > ctx.faucet_max]
    sizes = [n for n in ctx.bgp_sizes if n <= ctx.faucet_max]
    ctx.say(f"faucet-bgp: FAUCET {raw['version']} with BGP from {PEER}; sizes {sizes}")
    if not sizes:
        return rows
    try:
        lab_up(TOPOLOGY, state_path=lab_state)
        _control_link()
        with faucet_running(manager, work, config, BRIDGE):
            wait_for(lambda: session_established(PEER, SPEAKER_IP, ROUTER_RUN_ROOT), 60, 0.5)
            # FAUCET resolves the next hop by ARP on demand; a ping to its VIP makes it known at once.
            sh(["ip", "netns", "exec", PEER, "ping", "-c", "3", "-i", "0.2", VIP.split("/")[0]], check=False)
            feed = Feed(PEER, PEER_AS)
            for n in sizes:
                feed.load(n)
                adds: list[float] = []
                dels: list[float] = []
                error = ""
                for r in range(ctx.repeat if n < 10_000 else min(ctx.repeat, 3)):
                    try:
                        adds.append(_timed(feed, n, True))
                        dels.append(_timed(feed, n, False))
                    except TimeoutError as exc:
                        error = str(exc)
                        break
                    ctx.say(f"faucet-bgp: N={n} run {r + 1}: announce {adds[-1]:.2f} s ({n / adds[-1]:,.0f}/s), "
                            f"withdraw {dels[-1]:.2f} s")
                raw["sizes"][str(n)] = {"add_s": adds, "delete_s": dels, "error": error}
                rows += _rows(ctx, n, adds, dels, error, work)
                if error:
                    break
    finally:
        lab_down(state_path=lab_state)
        sh(["ip", "link", "del", CONTROL], check=False)
    return rows


def _rows(ctx: Context, n: int, adds: list[float], dels: list[float], error: str, work: Path) -> list[Row]:
    ours = ctx.raw.get("bgp", {}).get("sizes", {}).get(str(n), {})
    rf_add = Summary.of(a["rate"] for a in ours.get("add", [])) if ours else None
    rf_del = Summary.of(d["rate"] for d in ours.get("delete", [])) if ours else None
    bench = f"faucet-bgp N={n:,}"
    note = (f"FAUCET {ctx.raw['faucet-bgp']['version']} (beka BGP speaker): the bgp benchmark's feed from an FRR "
            "peer in FAUCET's VLAN, to N route flows in the switch; routeflow column = the bgp benchmark of this run"
            + (f"; {error} (FAUCET's log: {work / 'faucet.log'})" if error else ""))
    label = "FAUCET over BGP"
    return [
        Row(bench, "announce: routes/s, routeflow vs FAUCET", "1/s", rf_add,
            Summary.of(n / s for s in adds), label if adds else "FAUCET failed, see note",
            "target: more than FAUCET", note=note),
        Row(bench, "withdraw: routes/s, routeflow vs FAUCET", "1/s", rf_del,
            Summary.of(n / s for s in dels), label if dels else "FAUCET failed, see note", note=note),
    ]
