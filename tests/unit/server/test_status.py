from routeflow.model import Fib, Interface, Neighbour, NextHop, Route
from routeflow.server.nib import VmState
from routeflow.server.status import fib_drift

R1 = Route("10.0.0.0/24", (NextHop("eth1", "172.31.1.2"),))
R2 = Route("10.0.1.0/24", (NextHop("eth1", "172.31.1.2"),))
R2B = Route("10.0.1.0/24", (NextHop("eth1", "172.31.1.3"),))
IF = Interface("eth1", "02:00:00:00:00:01", True, ("172.31.1.1/24",))
N = Neighbour("eth1", "172.31.1.2", "0a:00:00:00:00:01")


def test_no_drift_when_equal():
    state = VmState()
    state.replace(Fib((IF,), (R1, R2), (N,)))
    assert fib_drift("rA", state, Fib((IF,), (R2, R1), (N,))) == []


def test_lacking_stale_and_changed_entries_are_named():
    state = VmState()
    state.replace(Fib((IF,), (R1, R2), (N,)))
    lines = fib_drift("rA", state, Fib((IF,), (R2B,), ()))
    text = "\n".join(lines)
    assert "lacks route Route(prefix='10.0.1.0/24'" in text and "172.31.1.3" in text
    assert "stale route Route(prefix='10.0.1.0/24'" in text
    assert "stale route Route(prefix='10.0.0.0/24'" in text
    assert "stale neighbour" in text
    assert len(lines) == 4
