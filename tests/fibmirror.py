"""What an RF-Server holds for a VM, rebuilt from the client's messages, for tests.

Stricter than the server itself: a delta that deletes something never
announced fails the test, where the server would shrug it off.
"""

from __future__ import annotations

from routeflow.model import Fib, Interface, Neighbour, Route
from routeflow.protocol.messages import FibDelta


class FibMirror:
    """A snapshot replaced by :meth:`reset`, with deltas applied by :meth:`apply`."""

    def __init__(self, fib: Fib | None = None) -> None:
        self.interfaces: dict[str, Interface] = {}
        self.routes: dict[str, Route] = {}
        self.neighbours: dict[tuple[str, str], Neighbour] = {}
        if fib is not None:
            self.reset(fib)

    def reset(self, fib: Fib) -> None:
        self.interfaces = {i.ifname: i for i in fib.interfaces}
        self.routes = {r.prefix: r for r in fib.routes}
        self.neighbours = {(n.ifname, n.ip): n for n in fib.neighbours}

    def apply(self, delta: FibDelta | None) -> None:
        if delta is None:
            return
        for name in delta.interfaces_del:
            del self.interfaces[name]
        self.interfaces.update((i.ifname, i) for i in delta.interfaces_set)
        for prefix in delta.routes_del:
            del self.routes[prefix]
        self.routes.update((r.prefix, r) for r in delta.routes_set)
        for key in delta.neighbours_del:
            del self.neighbours[key]
        self.neighbours.update(((n.ifname, n.ip), n) for n in delta.neighbours_set)

    def fib(self) -> Fib:
        return Fib(
            tuple(sorted(self.interfaces.values())),
            tuple(sorted(self.routes.values())),
            tuple(sorted(self.neighbours.values())),
        )
