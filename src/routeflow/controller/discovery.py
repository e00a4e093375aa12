"""Which physical links exist, from discovery probes seen (or missed). Pure: the
caller passes the time and sends the resulting link changes to the server.

A link is directed: probes leaving ``src`` arrive at ``dst``. It is up from its
first sighting until a port at either end goes down (at once) or no probe
crossed it for ``timeout`` seconds (a silent failure, or a recabling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: A datapath port: (dpid, port number).
Port = tuple[int, int]


@dataclass(frozen=True)
class Change:
    """A directed link came up or went down."""

    src: Port
    dst: Port
    up: bool


@dataclass
class LinkTable:
    timeout: float
    #: (src, dst) -> when a probe last crossed it.
    last_seen: dict[tuple[Port, Port], float] = field(default_factory=dict)

    def seen(self, src: Port, dst: Port, now: float) -> list[Change]:
        """A probe from ``src`` arrived at ``dst``. A port has one peer: a new one replaces the old."""
        changes = []
        key = (src, dst)
        if key not in self.last_seen:
            stale = [k for k in self.last_seen if k[1] == dst or k[0] == src]
            changes = [self._drop(k) for k in stale]
            changes.append(Change(src, dst, True))
        self.last_seen[key] = now
        return changes

    def expire(self, now: float) -> list[Change]:
        """Links no probe crossed for ``timeout`` seconds go down."""
        return [self._drop(k) for k, t in list(self.last_seen.items()) if now - t > self.timeout]

    def port_down(self, port: Port) -> list[Change]:
        """A port lost its link (or was deleted): every link at it goes down at once."""
        return [self._drop(k) for k in list(self.last_seen) if port in k]

    def datapath_gone(self, dpid: int) -> list[Change]:
        return [self._drop(k) for k in list(self.last_seen) if k[0][0] == dpid or k[1][0] == dpid]

    def _drop(self, key: tuple[Port, Port]) -> Change:
        del self.last_seen[key]
        return Change(key[0], key[1], False)
