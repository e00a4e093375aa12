"""Waiting for a condition in an asyncio test: the event loop's counterpart of
:func:`routeflow.harness.wait_for` (which blocks, so would stall what it waits for)."""

from __future__ import annotations

import asyncio
from typing import Callable


async def until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> None:
    """Return once ``predicate()`` holds, checked every ``interval`` s; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(interval)
