"""Which of a server pair serves: leader election on a lease.

Two RF-Servers share one config and one store (etcd). The one that holds the
leader key, bound to a lease of ``lease_ttl`` seconds it keeps alive, is active:
it listens and writes the NIB. The other is the standby: it looks at the key
every :data:`POLL_FRACTION` of the TTL and, once the key is gone (the active
died and its lease expired, or it resigned), creates it with its own lease and
takes over.

Fencing: the active server can know its lease is alive only up to the moment it
sent its last successful keepalive plus the TTL granted; etcd cannot expire the
lease before then. Past that moment (keepalives failing: etcd unreachable, this
host partitioned) the lease may be gone and the standby may be serving, so the
active one stops serving at once: :class:`Election` says ``FENCED`` and the
server closes its listeners and exits, leaving its VMs to its successor. A
refused NIB write (the leader key is not ours) fences it too.

:class:`Election` is the pure state machine (times are the caller's monotonic
clock); :func:`campaign` and :func:`hold` drive it against a :class:`Lease`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from routeflow.lograte import RateLimit

log = logging.getLogger("routeflow.server.election")
# An unreachable etcd is met at every poll: said a few times, then summarised.
log.addFilter(RateLimit())

#: The standby looks at the leader key this often, as a fraction of the TTL.
POLL_FRACTION = 0.1
#: The active server renews its lease this often, as a fraction of the TTL.
KEEPALIVE_FRACTION = 0.25
#: The active server fences itself this long before its lease could expire: the time
#: it takes to close its listeners, and clocks that run at slightly different rates.
FENCE_MARGIN = 0.1


class Role(enum.Enum):
    STANDBY = "standby"
    ACTIVE = "active"
    #: Was active, and cannot be sure it still is: must stop serving at once.
    FENCED = "fenced"


@dataclass
class Election:
    """One server's view of the election."""

    server_id: str
    role: Role = Role.STANDBY
    #: While active: the moment (monotonic) before which the lease is certainly ours.
    valid_until: float = 0.0
    #: Why it was fenced.
    reason: str = ""

    def should_campaign(self, holder: str | None) -> bool:
        """Whether to try for the leader key, seeing ``holder`` hold it (None: nobody)."""
        return self.role is Role.STANDBY and holder is None

    def won(self, sent_at: float, ttl: float) -> None:
        """The leader key is ours, on a lease of ``ttl`` s granted by a request sent at ``sent_at``."""
        self.role = Role.ACTIVE
        self.valid_until = sent_at + ttl - FENCE_MARGIN

    def kept(self, sent_at: float, ttl: float) -> None:
        """A keepalive sent at ``sent_at`` answered ``ttl`` s left (<= 0: the lease is gone)."""
        if self.role is not Role.ACTIVE:
            return
        if ttl <= 0:
            self.fence("the lease expired")
        else:
            self.valid_until = max(self.valid_until, sent_at + ttl - FENCE_MARGIN)

    def deposed(self, why: str) -> None:
        """The store refused a write as not the leader's."""
        if self.role is Role.ACTIVE:
            self.fence(why)

    def tick(self, now: float) -> Role:
        """The role at ``now``: an active server whose lease may have expired is fenced."""
        if self.role is Role.ACTIVE and now >= self.valid_until:
            self.fence(f"no keepalive confirmed the lease for {now - self.valid_until + FENCE_MARGIN:.1f} s")
        return self.role

    def fence(self, reason: str) -> None:
        self.role, self.reason = Role.FENCED, reason


class Lease(Protocol):
    """The leader key and its lease, as a store offers them (:class:`~routeflow.server.etcd_store.EtcdStore`)."""

    ttl: float

    async def holder(self) -> str | None:
        """The id of the server holding the leader key, None if nobody does."""
        ...

    async def acquire(self) -> float | None:
        """Create the leader key with a new lease if nobody holds it: the TTL granted, or
        None if another server was first."""
        ...

    async def keepalive(self) -> float:
        """Renew our lease: the TTL it has left (<= 0: it is gone)."""
        ...

    async def resign(self) -> None:
        """Give the leader key up (revoke our lease), for a prompt takeover."""
        ...


async def campaign(lease: Lease, election: Election) -> None:
    """Wait as the standby until this server holds the leader key."""
    announced: str | None = None
    while election.role is Role.STANDBY:
        try:
            holder = await lease.holder()
            if election.should_campaign(holder):
                sent_at = time.monotonic()
                granted = await lease.acquire()
                if granted is not None:
                    election.won(sent_at, granted)
                    log.info("server %s is active (lease of %g s)", election.server_id, granted)
                    return
            elif holder != announced:
                log.info("standby: server %s is active", holder)
                announced = holder
        except OSError as exc:
            log.warning("standby: the store is unreachable: %s", exc)
        await asyncio.sleep(lease.ttl * POLL_FRACTION)


async def hold(lease: Lease, election: Election) -> str:
    """Keep the lease alive while active; returns why this server must stop serving."""
    interval = lease.ttl * KEEPALIVE_FRACTION
    while election.tick(time.monotonic()) is Role.ACTIVE:
        sent_at = time.monotonic()
        try:
            # Bounded: a keepalive still unanswered when the lease may be gone is too late.
            ttl = await asyncio.wait_for(lease.keepalive(), max(election.valid_until - sent_at, 0.01))
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("lease keepalive failed: %s", exc or "timeout")
        else:
            election.kept(sent_at, ttl)
        if election.role is not Role.ACTIVE:
            break
        await asyncio.sleep(max(0.0, min(interval, election.valid_until - time.monotonic())))
    return election.reason
