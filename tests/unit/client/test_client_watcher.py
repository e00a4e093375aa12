"""routeflow.client.watcher without a kernel: batching, resync and overflow recovery."""

from __future__ import annotations

import asyncio
import errno
from collections import deque
from typing import Any

import pytest

from routeflow.client import watcher as watcher_mod
from routeflow.client.watcher import Watcher
from routeflow.protocol.messages import FibAudit, FibDelta, FibSnapshot

from .support import run_async


class FakeEventSocket:
    """The event socket's interface: datagrams read so far, the socket error, a wake-up."""

    def __init__(self, rcvbuf: int) -> None:
        self.datagrams: deque[bytes] = deque()
        self.error: OSError | None = None
        self.readable = asyncio.Event()
        self.closed = False

    def drain(self) -> None:
        pass  # events are pushed in as they happen

    def close(self) -> None:
        self.closed = True


class FakeKernel:
    """Stands in for netlink: dumps from lists, events pushed as raw datagrams."""

    def __init__(self, build: Any) -> None:
        self.links = [build.link(2, "eth0", "02:00:00:00:00:02")]
        self.routes: list[bytes] = []
        self.dumps = self.route_dumps = 0
        self.during_dump: bytes | None = None
        self.sockets: list[FakeEventSocket] = []

    async def dump(self) -> list[bytes]:
        self.dumps += 1
        return self.links + self.routes

    async def dump_routes(self) -> list[bytes]:
        self.route_dumps += 1
        if self.during_dump is not None:  # something changes while the kernel is being read
            self.event(self.during_dump)
            self.during_dump = None
        return list(self.routes)

    def open(self, rcvbuf: int) -> FakeEventSocket:
        self.sockets.append(FakeEventSocket(rcvbuf))
        return self.sockets[-1]

    def event(self, msg: bytes) -> None:
        self.sockets[-1].datagrams.append(msg)
        self.sockets[-1].readable.set()

    def fail(self, code: int) -> None:
        self.sockets[-1].error = OSError(code, "failed")
        self.sockets[-1].readable.set()


@pytest.fixture
def kernel(build: Any, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel(build)
    monkeypatch.setattr(watcher_mod, "dump", fake.dump)
    monkeypatch.setattr(watcher_mod, "dump_routes", fake.dump_routes)
    monkeypatch.setattr(watcher_mod, "_EventSocket", fake.open)
    return fake


def _route(build: Any, n: int, **kwargs: Any) -> bytes:
    return build.route(f"10.{n // 256}.{n % 256}.0/24", (2, "10.0.0.1"), **kwargs)


@run_async
async def test_burst_is_coalesced_and_capped(kernel: FakeKernel, build: Any) -> None:
    watcher = Watcher(window=0.01, max_batch=400)  # datagrams, here one message each
    updates = watcher.updates()
    assert isinstance(await anext(updates), FibSnapshot)
    for n in range(1000):
        kernel.event(_route(build, n))
    sizes: list[int] = []
    while sum(sizes) < 1000:
        delta = await anext(updates)
        assert isinstance(delta, FibDelta)
        sizes.append(len(delta.routes_set))
    assert sizes == [400, 400, 200]
    assert len(watcher.fib().routes) == 1000
    await updates.aclose()


@run_async
async def test_events_a_few_ms_apart_share_a_delta(kernel: FakeKernel, build: Any) -> None:
    watcher = Watcher(window=0.05)
    updates = watcher.updates()
    await anext(updates)
    kernel.event(_route(build, 1))
    asyncio.get_running_loop().call_later(0.01, kernel.event, _route(build, 2))
    delta = await anext(updates)
    assert isinstance(delta, FibDelta) and len(delta.routes_set) == 2
    await updates.aclose()


@run_async
async def test_link_down_rereads_routes(kernel: FakeKernel, build: Any) -> None:
    kernel.routes = [_route(build, 1)]
    watcher = Watcher(window=0)
    updates = watcher.updates()
    snapshot = await anext(updates)
    assert isinstance(snapshot, FibSnapshot) and len(snapshot.fib.routes) == 1
    kernel.routes = []  # flushed by the kernel without a word
    kernel.event(build.link(2, "eth0", "02:00:00:00:00:02", flags=0x1002, operstate="DOWN"))
    delta = await anext(updates)
    assert isinstance(delta, FibDelta)
    assert delta.routes_del == ("10.0.1.0/24",)
    assert [i.up for i in delta.interfaces_set] == [False]
    await updates.aclose()


@run_async
async def test_overflow_gives_a_fresh_snapshot(kernel: FakeKernel, build: Any) -> None:
    watcher = Watcher(window=0)
    updates = watcher.updates()
    await anext(updates)
    kernel.routes = [_route(build, 7)]  # changed while events were being lost
    kernel.event(_route(build, 1))
    kernel.fail(errno.ENOBUFS)
    snapshot = await anext(updates)
    assert isinstance(snapshot, FibSnapshot)
    assert [r.prefix for r in snapshot.fib.routes] == ["10.0.7.0/24"]
    assert kernel.dumps == 2 and len(kernel.sockets) == 2  # a new socket, then a new dump
    assert kernel.sockets[0].closed
    await updates.aclose()


@run_async
async def test_other_socket_errors_propagate(kernel: FakeKernel) -> None:
    watcher = Watcher(window=0)
    updates = watcher.updates()
    await anext(updates)
    kernel.fail(errno.EBADF)
    with pytest.raises(OSError):
        await anext(updates)
    assert kernel.sockets[0].closed


@run_async
async def test_audit_repairs_and_counts_a_silent_change(kernel: FakeKernel, build: Any) -> None:
    kernel.routes = [_route(build, 1), _route(build, 2)]
    watcher = Watcher(window=0, audit_interval=0.01)
    updates = watcher.updates()
    assert len((await anext(updates)).fib.routes) == 2
    # The kernel drops a route and tells no one (a flushed next-hop object, say).
    kernel.routes = [_route(build, 1)]
    repair = await anext(updates)
    assert repair == FibDelta(routes_del=("10.0.2.0/24",))
    audit = await anext(updates)
    assert isinstance(audit, FibAudit) and (audit.audits, audit.repaired) == (1, 1) and audit.last_repair
    # Nothing differs next time: an audit with nothing to repair.
    again = await anext(updates)
    assert isinstance(again, FibAudit) and (again.audits, again.repaired, again.last_repair) == (2, 1, audit.last_repair)
    await updates.aclose()


@run_async
async def test_audit_does_not_count_what_changed_while_it_read(kernel: FakeKernel, build: Any) -> None:
    kernel.routes = [_route(build, 1)]
    watcher = Watcher(window=0, audit_interval=0.01)
    updates = watcher.updates()
    await anext(updates)
    # A route is added, and its event arrives while the audit reads the kernel.
    kernel.routes = [_route(build, 1), _route(build, 3)]
    kernel.during_dump = _route(build, 3)
    delta = await anext(updates)
    assert delta == FibDelta(routes_set=watcher.fib().routes[1:])
    audit = await anext(updates)
    assert isinstance(audit, FibAudit) and (audit.audits, audit.repaired) == (1, 0)
    await updates.aclose()


@run_async
async def test_no_audit_while_events_are_pending(kernel: FakeKernel, build: Any) -> None:
    watcher = Watcher(window=0, audit_interval=0.01)
    updates = watcher.updates()
    await anext(updates)
    await asyncio.sleep(0.02)  # an audit is due, but an event is waiting: it goes first
    kernel.routes = [_route(build, 4)]
    kernel.event(_route(build, 4))
    assert isinstance(await anext(updates), FibDelta)
    assert kernel.route_dumps == 0
    assert isinstance(await anext(updates), FibAudit) and kernel.route_dumps == 1
    await updates.aclose()
