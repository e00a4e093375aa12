"""routeflow.client.watcher without a kernel: batching, resync and overflow recovery."""

from __future__ import annotations

import asyncio
import errno
from collections import deque
from typing import Any

import pytest

from routeflow.client import watcher as watcher_mod
from routeflow.client.watcher import Watcher
from routeflow.protocol.messages import FibDelta, FibSnapshot

from .support import raw, run_async


class FakeEventSocket:
    """The event socket's interface: datagrams read so far, the socket error, a wake-up."""

    def __init__(self, rcvbuf: int) -> None:
        self.datagrams: deque[bytes] = deque()
        self.error: OSError | None = None
        self.readable = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeKernel:
    """Stands in for netlink: dumps from lists, events pushed as raw datagrams."""

    def __init__(self, build: Any) -> None:
        self.links = [build.link(2, "eth0", "02:00:00:00:00:02")]
        self.routes: list[Any] = []
        self.dumps = 0
        self.sockets: list[FakeEventSocket] = []

    async def dump(self) -> list[bytes]:
        self.dumps += 1
        return [raw(m) for m in self.links + self.routes]

    async def dump_routes(self) -> list[bytes]:
        return [raw(m) for m in self.routes]

    def open(self, rcvbuf: int) -> FakeEventSocket:
        self.sockets.append(FakeEventSocket(rcvbuf))
        return self.sockets[-1]

    def event(self, msg: Any) -> None:
        self.sockets[-1].datagrams.append(raw(msg))
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


def _route(build: Any, n: int, **kwargs: Any) -> Any:
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
