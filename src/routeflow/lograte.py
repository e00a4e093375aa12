"""Logging that a flood cannot turn into a flood of log lines.

What peers cause (a refused hello, a malformed frame, an impostor) is logged
with its reason; 5,000 such peers a second would otherwise write 5,000 lines a
second. :class:`RateLimit` lets ``burst`` records of one message template
through per ``interval``; the first record after a window that suppressed some
says how many.
"""

from __future__ import annotations

import logging
import time


class RateLimit(logging.Filter):
    """At most ``burst`` records of each message template per ``interval`` seconds."""

    def __init__(self, burst: int = 20, interval: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        # (logger, template) -> (window start, passed, suppressed). Templates are the
        # code's own strings, so this holds a few dozen entries at most.
        self._windows: dict[tuple[str, object], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        start, passed, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start >= self.interval:
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} more like this suppressed in {now - start:.0f} s]"
            start, passed, suppressed = now, 0, 0
        if passed < self.burst:
            self._windows[key] = (start, passed + 1, suppressed)
            return True
        self._windows[key] = (start, passed, suppressed + 1)
        return False
