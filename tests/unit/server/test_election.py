"""Leader election of a server pair against a fake lease: who serves, and fencing."""

from __future__ import annotations

import asyncio

from routeflow.server.election import FENCE_MARGIN, Election, Role, campaign, hold


def test_a_standby_campaigns_only_when_nobody_holds_the_key():
    election = Election("b")
    assert not election.should_campaign("a")
    assert election.should_campaign(None)
    election.won(sent_at=10.0, ttl=1.0)
    assert election.role is Role.ACTIVE
    assert not election.should_campaign(None)


def test_the_active_fences_itself_before_its_lease_can_expire():
    election = Election("a")
    election.won(sent_at=10.0, ttl=1.0)
    assert election.tick(10.5) is Role.ACTIVE
    election.kept(sent_at=10.5, ttl=1.0)  # renewed: certainly ours until 11.5
    assert election.tick(11.5 - FENCE_MARGIN - 0.01) is Role.ACTIVE
    # No keepalive confirmed since: the lease may be gone, the standby may be serving.
    assert election.tick(11.5 - FENCE_MARGIN) is Role.FENCED
    assert "no keepalive" in election.reason


def test_a_late_keepalive_does_not_shorten_the_lease_and_an_expired_one_fences():
    election = Election("a")
    election.won(sent_at=10.0, ttl=2.0)
    election.kept(sent_at=9.0, ttl=1.0)  # an older reply, answered late
    assert election.valid_until == 12.0 - FENCE_MARGIN
    election.kept(sent_at=10.2, ttl=-1)
    assert election.role is Role.FENCED and election.reason == "the lease expired"


def test_a_refused_write_fences_only_an_active_server():
    standby = Election("b")
    standby.deposed("refused")
    assert standby.role is Role.STANDBY
    active = Election("a")
    active.won(0.0, 1.0)
    active.deposed("refused")
    assert active.role is Role.FENCED


class FakeLease:
    """A leader key and its lease, timed by the test's event loop."""

    def __init__(self, ttl: float = 0.4) -> None:
        self.ttl = ttl
        self.leader: str | None = "a"
        self.reachable = True
        self.keepalives = 0

    async def holder(self) -> str | None:
        if not self.reachable:
            raise ConnectionError("etcd unreachable")
        return self.leader

    async def acquire(self) -> float | None:
        if self.leader is not None:
            return None
        self.leader = "b"
        return self.ttl

    async def keepalive(self) -> float:
        if not self.reachable:
            raise ConnectionError("etcd unreachable")
        self.keepalives += 1
        return self.ttl

    async def resign(self) -> None:
        self.leader = None


def test_the_standby_takes_over_once_the_key_is_gone():
    lease = FakeLease()
    election = Election("b")

    async def run() -> None:
        waiting = asyncio.create_task(campaign(lease, election))
        await asyncio.sleep(0.2)
        assert not waiting.done() and election.role is Role.STANDBY
        lease.leader = None  # the active one's lease expired
        await asyncio.wait_for(waiting, 1)

    asyncio.run(run())
    assert election.role is Role.ACTIVE and lease.leader == "b"


def test_hold_keeps_the_lease_then_fences_when_the_store_is_lost():
    lease = FakeLease()
    election = Election("b")

    async def run() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        election.won(loop.time(), lease.ttl)
        holding = asyncio.create_task(hold(lease, election))
        await asyncio.sleep(1.0)  # 2.5 TTLs: kept alive all along
        assert not holding.done() and lease.keepalives >= 5
        lease.reachable = False
        cut = loop.time()
        reason = await asyncio.wait_for(holding, 2)
        return reason, loop.time() - cut

    reason, after = asyncio.run(run())
    assert election.role is Role.FENCED and "no keepalive" in reason
    # Fenced before the lease could expire: at most a TTL after the last keepalive.
    assert after <= lease.ttl
