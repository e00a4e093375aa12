"""``make demo``: an example network end to end, checked and measured.

Brings the example up (lab, controller, server and its VMs), waits for the
routing protocol to converge, shows every pair of hosts pings through flows
(no ICMP reaches the controller during those pings), runs verify, prints a
summary with the paper's Table 1 figures (slow and fast path ping RTT), and
tears everything down. Every step prints one line; any failure exits 1.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from routeflow.harness import Stack, ping, stop_kept, wait_for

CONVERGENCE_TIMEOUT = 120.0


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_demo(example: str = "rftest2", keep: bool = False) -> int:
    if stop_kept():
        _say("stopped the deployment a previous `demo --keep` left running")
    run_dir = Path(tempfile.mkdtemp(prefix="routeflow-demo-"))
    stack = Stack(example, run_dir)
    ok = False
    try:
        _say(f"[1/6] bringing up {example}: lab, RF-Controller, RF-Server and its {len(stack.config.vms)} VMs")
        stack.start()
        ok = _checks(stack)
    except Exception as exc:  # any failure: report it, keep the logs, tear down
        _say(f"FAILED: {exc}")
    finally:
        if not ok:
            _say(stack.log_tails(25))
        if keep and ok:
            stack.keep()
            http = stack.config.http.listen
            _say(f"\nleft running (logs in {run_dir}). Explore with `.venv/bin/routeflow status`, "
                 "`routeflow verify`, `ip netns exec h1 ping 172.31.4.100`"
                 + (f", the web view at http://{http}/ (API under /api/v1/, metrics at /metrics)" if http else "")
                 + "; stop it all with `.venv/bin/routeflow demo --stop` (or `make demo-stop`).")
        else:
            _say("tearing down")
            stack.stop()
            shutil.rmtree(run_dir, ignore_errors=True)
    _say("demo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def _checks(stack: Stack) -> bool:
    hosts = stack.host_addresses()
    pairs = len(stack.host_pairs())

    families = " and ".join(f"IPv{v}" for v in stack.versions())
    _say(f"[2/6] waiting for convergence: {pairs} host pairs reachable over {families}, and verify clean")

    def converged() -> bool:
        return stack.all_pairs_ok() and stack.verify().ok

    wait_for(converged, CONVERGENCE_TIMEOUT, interval=0.2)
    convergence = time.monotonic() - stack.server_started_at
    _say(f"      converged {convergence:.1f} s after the server started")

    _say("[3/6] all pairs ping through flows: ICMP packet-in counters must stay flat")
    trunked = [vm.name for vm in stack.config.vms if vm.trunk is not None]
    via = ("the slow path crosses the trunks, no packet-in needed" if stack.config.vms and not stack.config.templates
           and len(trunked) == len(stack.config.vms)
           else "routing protocol hellos and ARP relayed by the controller")
    before = stack.packet_ins()
    results = {(version, *pair): r for version in stack.versions()
               for pair, r in stack.all_pairs(count=5, interval=0.05, version=version).items()}
    after = stack.packet_ins()
    failed = [f"{a}->{b} (IPv{v})" for (v, a, b), r in results.items() if not r.ok]
    icmp_delta = sum(after.get(k, 0) - before.get(k, 0) for k in ("icmp", "icmpv6"))
    _say(f"      {len(results) - len(failed)}/{len(results)} pairs ({families}), "
         f"{sum(r.received for r in results.values())} replies; "
         f"ICMP packet-ins during the pings: {icmp_delta}; packet-ins of any kind: "
         f"{sum(after.values()) - sum(before.values())} ({via})")
    if failed or icmp_delta:
        _say(f"      FAILED pairs: {', '.join(failed) or 'none'}")
        return False

    if stack.tenants() and not _isolated(stack):
        return False
    if any(not s.joined for s in stack.topology.switches) and not _joining(stack):
        return False

    _say("[4/6] verify: every VM's FIB, translated, equals its datapath's flows")
    reply = stack.verify()
    for line in reply.differences:
        _say(f"      {line}")
    if not reply.ok:
        return False
    _say(f"      clean: {reply.checked}")

    _say("[5/6] the paper's Table 1: slow path (host pings its gateway) vs fast path (host to host)")
    first = next(iter(hosts))
    last = [dst for src, dst in stack.host_pairs() if src == first][-1]  # of its tenant, if tenants
    gateway = next(h.gateway for h in stack.topology.hosts if h.name == first)
    slow = ping(first, str(gateway), count=30, interval=0.05)
    fast = ping(first, hosts[last], count=30, interval=0.05)
    if not (slow.ok and fast.ok):
        _say("      FAILED: pings lost")
        return False

    status = stack.status(detail=False)
    routes = sum(vm["route_count"] for vm in status["vms"])
    flows = sum(dp["flow_count"] for dp in status["datapaths"])
    groups = sum(dp["group_count"] for dp in status["datapaths"])
    _say("[6/6] summary")
    rows = [
        ("convergence (server start to all pairs + verify clean)", f"{convergence:.1f} s"),
        ("routes in the VMs' FIBs", str(routes)),
        ("flows / groups on the datapaths", f"{flows} / {groups}"),
        (f"slow path {first} -> {gateway} ({'trunk' if trunked else 'controller relay'}): avg / p90",
         f"{slow.avg_ms:.3f} / {slow.p90_ms:.3f} ms"),
        (f"fast path {first} -> {last} ({hosts[last]}): avg / p90", f"{fast.avg_ms:.3f} / {fast.p90_ms:.3f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        _say(f"      {key.ljust(width)}  {value}")
    return True


def _isolated(stack: Stack) -> bool:
    """Tenants share the switches, not their traffic (see :meth:`Stack.tenant_leaks`)."""
    for tenant, (requests, replies, leaked) in stack.tenant_leaks().items():
        _say(f"      tenant {tenant}: {requests} echo requests to the other tenants' hosts' addresses, "
             f"{replies} replies (from {tenant}'s own hosts); ICMP packets reaching the other tenants' hosts: "
             f"{sum(leaked.values())}")
        if leaked:
            _say(f"      FAILED: {tenant}'s traffic reached {', '.join(f'{h} ({n})' for h, n in leaked.items())}")
            return False
    return True


def _joining(stack: Stack) -> bool:
    """The switches that join later (``joined: false``), one by one: each gets a VM made from
    a template and is routed to, or is rejected and holds nothing but the table-miss drop."""
    for switch in [s for s in stack.topology.switches if not s.joined]:
        hosts = [h.name for h in stack.topology.hosts if stack.switch_of(h.name) == switch.name]
        started = time.monotonic()
        decision = stack.join_switch(switch.name)
        decided = time.monotonic() - started
        if decision is None:
            _say(f"      switch {switch.name} joined; a configured VM mirrors it")
            continue
        if not decision["admitted"]:
            flows = next(d["flow_count"] for d in stack.status(detail=False)["datapaths"]
                         if d["dpid"] == f"{switch.dpid:#x}")
            reached = [h for h in hosts if ping(next(iter(stack.host_addresses())), stack.host_addresses()[h],
                                                  count=2, interval=0.1, timeout=0.5).received]
            _say(f"      switch {switch.name} ({switch.dpid:#x}) joined and was rejected in {decided:.2f} s: "
                 f"{decision['reason']}; it holds {flows} flow (the table-miss drop); its hosts reached: "
                 f"{', '.join(reached) or 'none'}")
            if reached or flows != 1:
                return False
            continue
        source = next(src for src, _ in stack.host_pairs() if src not in hosts)
        targets = {h: stack.host_addresses()[h] for h in hosts}

        def routed() -> bool:
            return all(ping(source, address, timeout=0.3).ok for address in targets.values())
        wait_for(routed, CONVERGENCE_TIMEOUT, interval=0.05)
        first_ping = time.monotonic() - started
        wait_for(stack.all_pairs_ok, CONVERGENCE_TIMEOUT, interval=0.2)
        everyone = time.monotonic() - started
        _say(f"      switch {switch.name} ({switch.dpid:#x}) joined: admitted in {decided:.2f} s, VM {decision['vm']} "
             f"made from template {decision['template']}; first routed ping {source} -> "
             f"{', '.join(targets)} {first_ping:.1f} s after it connected, every pair {everyone:.1f} s")
    return True
