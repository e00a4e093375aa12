"""The link-cut scenario of rftest2 and its variants, on any engine and plane."""

from __future__ import annotations

from routeflow.harness import CONVERGE_TIMEOUT, Stack, ping, wait_for
from routeflow.lab import network


def _cut_port_mirrored(stack: Stack) -> bool:
    """rA's eth3, which mirrors sA port 3 (link A-B), is down and no flow of sA outputs there."""
    vm = next(v for v in stack.status()["vms"] if v["name"] == "rA")
    eth3 = next(i for i in vm["interfaces"] if i["name"] == "eth3")
    return eth3["up"] is False and not any("output:3" in f for f in stack.flows("0x1"))


def cut_reroutes_and_restores(stack: Stack) -> None:
    """Cut link A-B, which h1 (sA) to h2 (sB) takes: traffic must reroute, verify stay
    clean, every pair come back; then restore the link and converge again."""
    state = stack.lab_state
    network.set_link("A-B", False, state_path=state)
    try:
        wait_for(lambda: _cut_port_mirrored(stack), 10, 0.2)
        wait_for(lambda: ping("h1", "172.31.2.100", timeout=0.5).ok, 30, 0.2)
        stack.wait_verify_clean()
        # The other pairs whose paths crossed the cut link may need a moment more.
        wait_for(lambda: all(r.ok for r in stack.all_pairs(count=1).values()), 30, 0.5)
    finally:
        network.set_link("A-B", True, state_path=state)
    wait_for(lambda: stack.all_pairs_ok(), CONVERGE_TIMEOUT, 0.5)
    stack.wait_verify_clean()
