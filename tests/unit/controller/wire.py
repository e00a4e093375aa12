"""OpenFlow byte streams, taken apart for assertions."""

from __future__ import annotations

import signal
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def split_messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, xid, bytes) of each OpenFlow message in ``data``, in order."""
    out = []
    while data:
        _, kind, length, xid = struct.unpack_from("!BBHI", data)
        out.append((kind, xid, data[:length]))
        data = data[length:]
    return out


class Expired(BaseException):
    """A :func:`deadline` passed. Not an Exception, so that no ``except Exception`` in the code under test hides it."""


@contextmanager
def deadline(seconds: float) -> Iterator[Callable[[], None]]:
    """Fail the block if it runs ``seconds`` (instead of hanging, or eating memory, forever).

    Yields a function that starts the clock again, for a deadline per step of a loop.
    An outer alarm clock (pytest-timeout's, another deadline's) gets what was left of it back.
    """

    def expire(_signum: int, _frame: object) -> None:
        raise Expired(f"still running after {seconds} s")

    def restart() -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    previous_handler = signal.signal(signal.SIGALRM, expire)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield restart
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - started), 0.001))
