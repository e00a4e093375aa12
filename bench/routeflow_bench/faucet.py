"""A peer side by side: FAUCET (PyPI ``faucet``, an os-ken application) on the same kind of
OVS userspace bridge, fed the same N prefixes; routes per second to flows present.

FAUCET runs from its own virtual environment, ``bench/.venv-faucet`` (created here on first
use with pip from PyPI; it pins os-ken 3.x, so it never shares routeflow's venv). The route
source is FAUCET's static routes (``routes:`` of a VLAN in faucet.yaml), not BGP: the config
is rewritten with N routes ``10.X.Y.0/24 via 192.168.252.1`` (a host namespace on port 1,
which answers FAUCET's ARP for the next hop) and FAUCET is told to reload (SIGHUP). The
clock runs from the SIGHUP to the switch holding N flows whose match lies in 8.0.0.0/5;
removal is the reload back to no routes. routeflow's figure in the same row comes from the
install benchmark of this run (kernel FIB -> flows), so the ratio is routeflow / FAUCET.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from routeflow.harness import wait_for
from routeflow_bench.common import WORK_DIR, BaselineHost, Context, PlainBridge, flow_count, sh
from routeflow_bench.install import prefix
from routeflow_bench.report import Row
from routeflow_bench.stats import Summary

VENV = WORK_DIR / ".venv-faucet"
BRIDGE, DPID, OF_PORT = "bnb-fa", 0xB0B, 6753
NEXT_HOP, VIP = "192.168.252.1", "192.168.252.254/24"
ROUTE_MATCH = "ip,nw_dst=8.0.0.0/5"  # every benchmark prefix (10.x, 11.x, ...) and nothing of FAUCET's own


def ensure_venv() -> Path:
    """FAUCET's own venv, created on first use; raises with pip's error text if it cannot be."""
    manager = VENV / "bin" / "osken-manager"
    if manager.exists() and (VENV / "bin" / "faucet").exists():
        return manager
    sh(["python3", "-m", "venv", str(VENV)], timeout=300)
    proc = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "faucet"], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError("pip install faucet failed: " + proc.stderr.strip()[-800:])
    return manager


def faucet_yaml(n: int, routers: str = "") -> str:
    """faucet.yaml: one VLAN with N static routes, ports 1 and 2, and ``routers`` (YAML) if given."""
    routes = "".join(f"      - route: {{ip_dst: '{prefix(i)}', ip_gw: '{NEXT_HOP}'}}\n" for i in range(n))
    return (
        "vlans:\n"
        "  bench:\n"
        "    vid: 100\n"
        f"    faucet_vips: ['{VIP}']\n"
        + ("    routes:\n" + routes if n else "")
        + "dps:\n"
        f"  {BRIDGE}:\n"
        f"    dp_id: {DPID:#x}\n"
        "    hardware: 'Open vSwitch'\n"
        "    interfaces:\n"
        "      1: {native_vlan: bench}\n"
        "      2: {native_vlan: bench}\n"
        + routers
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def faucet_running(manager: Path, work: Path, config: Path, bridge: str) -> Iterator[subprocess.Popen[bytes]]:
    """FAUCET on ``config`` (logs in ``work``), once it has programmed ``bridge``; stopped afterwards."""
    env = {**os.environ, "FAUCET_CONFIG": str(config), "FAUCET_LOG": str(work / "faucet.log"),
           "FAUCET_EXCEPTION_LOG": str(work / "faucet_exception.log"),
           "FAUCET_PROMETHEUS_ADDR": "127.0.0.1", "FAUCET_PROMETHEUS_PORT": str(_free_port()),
           "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)  # routeflow's tree must not shadow FAUCET's os-ken 3.x
    proc = subprocess.Popen([str(manager), f"--ofp-tcp-listen-port={OF_PORT}", "faucet.faucet"], env=env,
                            stdout=open(work / "stdout.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        try:
            wait_for(lambda: proc.poll() is None and flow_count(bridge) > 0, 60, 0.5)
        except TimeoutError:
            tail = (work / "stdout.log").read_text(errors="replace")[-800:]
            raise RuntimeError(f"FAUCET did not program {bridge} within 60 s: {tail}") from None
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def faucet_version() -> str:
    return sh([str(VENV / "bin" / "pip"), "show", "faucet"]).split("Version: ")[1].split()[0]


def run(ctx: Context) -> list[Row]:
    raw: dict[str, Any] = {"route_source": "faucet.yaml static routes, reloaded with SIGHUP", "sizes": {}}
    ctx.raw["faucet"] = raw
    try:
        manager = ensure_venv()
        version = faucet_version()
    except Exception as exc:
        return [Row("faucet", "(could not install FAUCET)", status="failed", note=f"{type(exc).__name__}: {exc}")]
    raw["version"] = version
    work = Path(tempfile.mkdtemp(prefix="bench-faucet-", dir=ctx.run_dir))
    config = work / "faucet.yaml"
    config.write_text(faucet_yaml(0))
    host = BaselineHost("bnb-fh1", f"{NEXT_HOP}/24", 1)
    rows: list[Row] = []
    ctx.say(f"faucet: FAUCET {version} on {BRIDGE}; sizes {ctx.sizes}")
    with PlainBridge(BRIDGE, [host], controller=f"tcp:127.0.0.1:{OF_PORT}", dpid=DPID), \
            faucet_running(manager, work, config, BRIDGE) as proc:
        sh(["ip", "netns", "exec", host.name, "ip", "route", "add", "default", "via", VIP.split("/")[0]])
        # The next hop answers FAUCET's ARP; a ping to the VIP makes FAUCET learn it at once.
        sh(["ip", "netns", "exec", host.name, "ping", "-c", "3", "-i", "0.2", VIP.split("/")[0]], check=False)
        for n in ctx.sizes:
            if n > ctx.faucet_max:
                rows.append(Row(f"faucet N={n:,}", "add: routes/s, routeflow vs FAUCET", status="skipped",
                                note=f"FAUCET not run above N={ctx.faucet_max:,} (--faucet-max)"))
                continue
            result = raw["sizes"][str(n)] = _measure(ctx, proc, config, n)
            rows += _rows(ctx, n, result)
            if result["error"]:
                ctx.say(f"faucet: N={n}: {result['error']}")
                break  # FAUCET is in no state for a larger N
    return rows


class FaucetStuck(RuntimeError):
    """FAUCET stopped making progress (exited, or keeps losing the switch)."""


#: Give up after OVS dropped FAUCET this many times during one reload.
MAX_DISCONNECTS = 3


def _reload(proc: subprocess.Popen[bytes], config: Path, n: int, timeout: float) -> tuple[float, float]:
    """Rewrite faucet.yaml with ``n`` routes and SIGHUP; (seconds to exactly n route flows,
    seconds from the first route flow changing to that point: flow programming alone)."""
    log = Path(config.parent, "faucet.log")

    def downs() -> int:
        return log.read_text(errors="replace").count("datapath down") if log.exists() else 0

    downs_before = downs()

    def count() -> int:
        if proc.poll() is not None:
            raise FaucetStuck(f"FAUCET exited {proc.returncode}")
        if downs() - downs_before >= MAX_DISCONNECTS:
            raise FaucetStuck(
                f"N={n}: OVS dropped FAUCET {MAX_DISCONNECTS} times during the reload ('no response to inactivity "
                "probe after 5 seconds'): each route change forces a cold start that keeps FAUCET busy longer "
                "than the probe, and every reconnect starts the cold start again, so no route flow is ever "
                f"installed ({flow_count(BRIDGE, ROUTE_MATCH)} of {n})")
        return flow_count(BRIDGE, ROUTE_MATCH)

    config.write_text(faucet_yaml(n))
    t0 = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    # Every reload starts from no routes (the previous one removed them).
    if n:
        wait_for(lambda: count() > 0, timeout, 0.05)
    t_first = time.monotonic() if n else t0
    wait_for(lambda: count() == n, timeout, 0.05)
    t_done = time.monotonic()
    return t_done - t0, max(t_done - t_first, 1e-3)


def _measure(ctx: Context, proc: subprocess.Popen[bytes], config: Path, n: int) -> dict[str, Any]:
    repeat = ctx.repeat if n < 10_000 else min(ctx.repeat, 3)
    timeout = max(120.0, n / 50)
    adds: list[float] = []
    programming: list[float] = []
    dels: list[float] = []
    error = ""
    for r in range(repeat):
        try:
            total, flows_only = _reload(proc, config, n, timeout)
            adds.append(total)
            programming.append(flows_only)
            dels.append(_reload(proc, config, 0, timeout)[0])
        except TimeoutError:
            error = (f"N={n}: {flow_count(BRIDGE, ROUTE_MATCH)} of {n} route flows after {timeout:.0f} s"
                     + ("" if proc.poll() is None else f"; FAUCET exited {proc.returncode}"))
            break
        except FaucetStuck as exc:
            error = str(exc)
            break
        ctx.say(f"faucet: N={n} run {r + 1}/{repeat}: add {adds[-1]:.2f} s ({n / adds[-1]:,.0f}/s), "
                f"delete {dels[-1]:.2f} s")
    return {"add_s": adds, "programming_s": programming, "delete_s": dels, "error": error}


def _rows(ctx: Context, n: int, result: dict[str, Any]) -> list[Row]:
    install = ctx.raw.get("install", {}).get("sizes", {}).get(str(n), {})
    rf_add = Summary.of(a["rate"] for a in install.get("add", [])) if install else None
    rf_del = Summary.of(d["rate"] for d in install.get("delete", [])) if install else None
    label = "FAUCET static routes"
    note = (f"FAUCET {ctx.raw['faucet'].get('version')}: SIGHUP reload of faucet.yaml with N static routes to "
            f"N flows in the switch; routeflow column = the install benchmark of this run"
            + (f"; {result['error']}" if result["error"] else ""))
    if not result["add_s"]:  # FAUCET failed: routeflow's figure stays, the note says why FAUCET has none
        return [Row(f"faucet N={n:,}", "add: routes/s, routeflow vs FAUCET", "1/s", rf_add, None,
                    "FAUCET failed, see note", "target: more than FAUCET", note=note)]
    return [
        Row(f"faucet N={n:,}", "add: routes/s, routeflow vs FAUCET", "1/s", rf_add,
            Summary.of(n / s for s in result["add_s"]), label, "target: more than FAUCET", note=note),
        Row(f"faucet N={n:,}", "add: routes/s, FAUCET flow programming only", "1/s", rf_add,
            Summary.of(n / s for s in result["programming_s"]), "FAUCET first->last route flow",
            note="FAUCET counted from its first route flow appearing, i.e. without the cold start (datapath "
                 "reconnect) and next-hop ARP that every route change in faucet.yaml forces"),
        Row(f"faucet N={n:,}", "delete: routes/s, routeflow vs FAUCET", "1/s", rf_del,
            Summary.of(n / s for s in result["delete_s"]), label),
    ]
