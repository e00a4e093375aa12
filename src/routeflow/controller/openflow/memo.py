"""Bounded memos of the fast codec: the pieces that repeat across thousands of routes.

Each memo is emptied when full, so memory stays bounded on odd tables. The
bounds are read when a memo fills, so tests can lower them.
"""

from __future__ import annotations

from typing import TypeVar

#: Entries each memo may hold before it is emptied.
CACHE_LIMIT = 1 << 16
#: Bytes of keys a memo of raw bytes from a switch may hold (a route's instruction block is 64).
MEMO_BYTES = 1 << 20

_K = TypeVar("_K")
_V = TypeVar("_V")


def remember(memo: dict[_K, _V], key: _K, value: _V) -> _V:
    """Store ``value`` under ``key`` in a memo bounded in entries (emptied first if full); return it.

    The memos are plain dicts: a lookup in a dict subclass costs about twice as much.
    """
    if len(memo) >= CACHE_LIMIT:
        memo.clear()
    memo[key] = value
    return value


class BytesMemo(dict[bytes, _V]):
    """A memo keyed by raw bytes from a switch, bounded in entries and in key bytes.

    A count alone would not bound it: a switch chooses the keys, up to 64 KiB each.
    """

    key_bytes = 0

    def remember(self, key: bytes, value: _V) -> _V:
        """:func:`remember`, bounded in key bytes too."""
        if len(self) >= CACHE_LIMIT or self.key_bytes + len(key) > MEMO_BYTES:
            self.clear()
            self.key_bytes = 0
        self[key] = value
        self.key_bytes += len(key)
        return value
