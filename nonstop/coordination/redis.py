"""`RedisCoordinator`: replicas on one Redis — membership, shares of Slack's connections, takeover.

Every third of a lease the replica beats (`ClusterShare.beat`): it stays a member, sees who else is there,
and sees who died (a heartbeat that lapsed on Redis's clock, or a replica that left). The events a dead
replica acked and never finished move to this one (`RedisLedger.reassign`, atomic: two replicas never both
get one) and run here. One heartbeat per replica, whatever its backlog: nothing is renewed per event.

The heartbeat is also the probe of a degraded Redis (`nonstop.net.redis`): when Redis is usable again, or
forgot this replica (it restarted empty, or this replica stalled past its lease), the ledger hands it what
it missed (`RedisLedger.resync`). Nothing is taken over until Redis has been usable for a whole lease, so
that live replicas just back from the same outage have beaten again before anyone calls them dead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from nonstop.aio import raise_if_cancelled
from nonstop.coordination.base import Coordinator, Takeover
from nonstop.coordination.cluster_share import ClusterShare
from nonstop.ledger.base import Recovered
from nonstop.net.redis import RedisConnection, RedisError
from nonstop.status import ClusterView

__all__ = ["RedisCoordinator", "SharedLedger"]

log = logging.getLogger("nonstop.cluster")


_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_STEP_DOWN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class SharedLedger(Protocol):
    """What the coordinator needs of the ledger on the same Redis (`nonstop.ledger.redis.RedisLedger`)."""

    async def reassign(self, dead: str) -> Recovered: ...

    async def resync(self) -> None: ...


class RedisCoordinator(Coordinator):
    """Args:
    connection: the process's Redis connection (shared with the ledger).
    ledger: the ledger on the same Redis.
    share: this replica's membership and share of Slack's connections, on the same connection.
    """

    shared = True

    def __init__(self, connection: RedisConnection, ledger: SharedLedger, share: ClusterShare) -> None:
        self._conn = connection
        self._ledger = ledger
        self._lease_s = share.lease_s
        self.share: ClusterShare = share
        self._usable_since: float | None = None
        self._taking_over = True
        self._must_resync = False
        connection.on_change(self._usable)

    @property
    def view(self) -> ClusterView | None:
        return self.share.view

    async def start(self) -> None:
        if not self._conn.degraded:
            try:
                await self.share.beat()
                self._usable_since = self._conn.now()
            except RedisError as e:
                self._conn.failed(e)
        if self._conn.degraded:
            self.share.standalone()
        log.info(
            "cluster mode on %s as replica %s: this replica may hold %d of Slack's %d connections now",
            self._conn.url,
            self.share.name,
            self.share.allowed,
            self.share.limit,
        )

    async def run(self, takeover: Takeover) -> None:
        interval = self._lease_s / 3
        while True:
            raise_if_cancelled()  # a cancellation redis-py swallowed whole must still end the heartbeat
            await asyncio.sleep(interval)
            try:
                await self._beat(takeover)
            except RedisError as e:
                raise_if_cancelled()
                self._conn.failed(e)
            except Exception:  # a bug here must not stop the heartbeat: others would run our events twice
                raise_if_cancelled()
                log.exception("the cluster heartbeat failed unexpectedly; beating again in %.1f s", interval)

    async def _beat(self, takeover: Takeover) -> None:
        started = self._conn.now()
        await self.share.beat()
        if not self._conn.probed(started):
            return
        if self._must_resync or not self.share.was_member:
            self._must_resync = False
            await self._ledger.resync()
        usable_for = self._conn.now() - (self._usable_since if self._usable_since is not None else self._conn.now())
        if not self._taking_over or usable_for < self._lease_s:
            return
        for dead in self.share.dead:
            recovered = await self._ledger.reassign(dead)
            if recovered.unfinished or recovered.given_up:
                takeover(recovered, f"another replica acked and could not finish ({dead}: it stopped or died)")
            await self.share.buried(dead)

    def _usable(self, usable: bool) -> None:
        self._usable_since = self._conn.now() if usable else None
        self._must_resync = usable
        self.share.publish()

    async def lead(self, name: str, ttl_s: float) -> bool:
        """One replica at a time holds `name` (taken or renewed atomically, on Redis's clock); while Redis is
        unusable each replica leads on its own, as it answers on its own."""
        if self._conn.degraded:
            return True
        try:
            held = await self._conn.client.eval(_LEAD, 1, self.share.key(f"lead:{name}"), self.share.member,
                                                int(ttl_s * 1000))  # fmt: skip
        except RedisError as e:
            self._conn.failed(e)
            return True
        return bool(held)

    async def step_down(self, name: str) -> None:
        if self._conn.degraded:
            return
        try:
            await self._conn.client.eval(_STEP_DOWN, 1, self.share.key(f"lead:{name}"), self.share.member)
        except RedisError as e:
            self._conn.failed(e)

    def stop_taking_over(self) -> None:
        self._taking_over = False

    async def leave(self) -> None:
        if self._conn.degraded:
            return  # its heartbeat lapses within a lease anyway
        try:
            await self.share.leave()
        except RedisError as e:
            log.warning("could not leave the cluster at once (%s); the others take over when its lease ends", e)
