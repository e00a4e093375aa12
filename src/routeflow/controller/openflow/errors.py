"""The two outcomes of the fast codec besides a result: refused, or malformed input."""

from __future__ import annotations


class Unsupported(Exception):
    """A shape the fast codec does not write or read: the reference codec's business."""


class DecodeError(ValueError):
    """What a switch sent is not well-formed OpenFlow 1.3: the one error the decoders raise.

    The text says what is wrong and where (a byte offset in the buffer). A
    ValueError, so callers that caught ValueError before still do.
    """


class Stats:
    """How many entries the fast codec refused and the reference codec took over, both ways
    (for tests and the benchmark)."""

    __slots__ = ("fallback",)

    def __init__(self) -> None:
        self.fallback = 0


STATS = Stats()
