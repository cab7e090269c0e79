"""This process's share of Slack's connection budget: how many links it may hold, alone or among replicas.

Slack allows 10 Socket Mode connections per app and refuses the 11th (`too_many_websockets`). The
supervisor asks its share before every connection it opens (`acquire`: "may I open one more link?",
atomic in Redis against what all replicas hold) and tells it when a link is gone (`release`); a slot
past `allowed` waits or closes its link. `others_held()` feeds the supervisor's one budget check
(`nonstop.links.budget`): the other replicas' connections count against Slack's 10 like its own.

- `LocalShare`: one process, `NONSTOP_CONNECTIONS` links.
- `ClusterShare`: replicas on one Redis. Each registers with a heartbeat (its name, the links it
  holds, its wish, when it started, how many events it handled); a member whose heartbeat lapses
  is gone, with its links. From the members, every replica computes the same split (`allocate`):
  each replica one link in order of age, while the 10 last; then the rest, one by one, to replicas
  that wish for more. Replicas past the tenth wait as standbys. A reservation is taken atomically
  against the links *held* (not the split) before a link is opened, so a newcomer waits until an
  older replica has closed the link it gave up: the cluster never holds more than 10.

The ghost guard compares Slack's own count (`hello`'s `num_connections`) with the links the members
hold: a surplus that lasts means another process uses the same app token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from nonstop.ledger import RedisLedger
from nonstop.ledger.redis import REDIS_NOW_MS
from nonstop.status import ClusterView, Replica, Telemetry

log = logging.getLogger("nonstop.coordination.cluster")

SLACK_CONNECTION_LIMIT = 10
"""Socket Mode connections Slack allows one app at once [Slack docs: "up to 10"; `too_many_websockets`]."""


class _Room:
    """Wakes whoever waits for a connection of the budget when one may have come free here."""

    def __init__(self) -> None:
        self._freed = asyncio.Event()

    def freed(self) -> None:
        self._freed.set()

    def _asking(self) -> None:
        self._freed.clear()  # a release from now on (even while asking Redis) ends the next wait at once

    async def wait_for_room(self, timeout_s: float) -> None:
        """After a refused `acquire`: until a link here is released, or `timeout_s` (room made by other
        replicas shows only through Redis)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._freed.wait(), timeout_s)


class LocalShare(_Room):
    """One process alone: it may hold what it wishes for."""

    def __init__(self, wish: int) -> None:
        super().__init__()
        self.wish = wish
        self.held = 0
        self.changed = asyncio.Event()  # never set: the allowance of a lone process does not change

    @property
    def allowed(self) -> int:
        return self.wish

    def room(self, held: int) -> int:
        return max(0, SLACK_CONNECTION_LIMIT - held)

    def others_held(self) -> int:
        return 0

    async def acquire(self) -> bool:
        """One more link? Alone, the supervisor's own budget check (`nonstop.links.budget`) decides: always yes."""
        self._asking()
        if self.held >= SLACK_CONNECTION_LIMIT:
            return False
        self.held += 1
        return True

    def release(self) -> None:
        self.held = max(0, self.held - 1)
        self.freed()

    def hello(self, num_connections: object) -> None:
        return None

    def others_short(self) -> int:
        """Links other replicas are owed and do not hold yet: none, alone."""
        return 0


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    wish: int
    held: int
    started_at: float
    handled: int


def allocate(members: list[Member], limit: int = SLACK_CONNECTION_LIMIT) -> dict[str, int]:
    """The split of `limit` connections: one each by age while they last, then the rest by age to wishes."""
    order = sorted(members, key=lambda m: (m.started_at, m.id))
    share = {m.id: 0 for m in order}
    left = limit
    for m in order:
        if left and m.wish > 0:
            share[m.id], left = 1, left - 1
    while left:
        more = [m for m in order if share[m.id] and share[m.id] < m.wish]
        if not more:
            break
        for m in more:
            if left:
                share[m.id] += 1
                left -= 1
    return share


# Both scripts first forget the members whose heartbeat lapsed (with what they held), on Redis's clock.
_EXPIRE_MEMBERS = (
    REDIS_NOW_MS
    + """for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'members', '-inf', now_ms)) do
  redis.call('ZREM', p .. 'members', id)
  redis.call('HDEL', p .. 'member', id)
  redis.call('HDEL', p .. 'held', id)
end
"""
)

_BEAT = (
    """
local p, me, info, held, lease_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
"""
    + _EXPIRE_MEMBERS
    + """
redis.call('ZADD', p .. 'members', now_ms + lease_ms, me)
redis.call('HSET', p .. 'member', me, info)
redis.call('HSET', p .. 'held', me, held)
return {redis.call('HGETALL', p .. 'member'), redis.call('HGETALL', p .. 'held')}
"""
)

# One more link for `me`, if the links held by live members leave room and its share allows it.
_ACQUIRE = (
    """
local p, me, limit, share, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
"""
    + _EXPIRE_MEMBERS
    + """
if redis.call('ZSCORE', p .. 'members', me) == false then
  return -1
end
local total = 0
local held = redis.call('HGETALL', p .. 'held')
for i = 2, #held, 2 do total = total + tonumber(held[i]) end
local mine = tonumber(redis.call('HGET', p .. 'held', me) or '0')
if total + 1 > limit or mine + 1 > share then
  return 0
end
redis.call('HINCRBY', p .. 'held', me, 1)
return 1
"""
)

_LEAVE = """
local p, me = ARGV[1], ARGV[2]
redis.call('ZREM', p .. 'members', me)
redis.call('HDEL', p .. 'member', me)
redis.call('HDEL', p .. 'held', me)
return 1
"""


class ClusterShare(_Room):
    """This replica's share of Slack's connections, agreed with the other replicas through Redis."""

    def __init__(
        self,
        ledger: RedisLedger,
        *,
        name: str,
        wish: int,
        telemetry: Telemetry,
        limit: int = SLACK_CONNECTION_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._ledger = ledger
        self.name = name
        self.wish = wish
        self.limit = limit
        self.held = 0
        self.allowed = 0  # nothing until the first heartbeat has seen the others
        self._agreed = False  # whether a heartbeat (or an outage at start) has set `allowed` yet
        self.changed = asyncio.Event()  # set (and replaced) whenever `allowed` changes
        self._telemetry = telemetry
        self._clock = clock
        self._started_at = time.time()
        self._members: list[Member] = []
        self._scripts = {
            name: ledger.client.register_script(body) for name, body in (("beat", _BEAT), ("acquire", _ACQUIRE))
        }
        self._leave = ledger.client.register_script(_LEAVE)
        self._said_standby = False
        self._ghosts: list[tuple[float, int]] = []  # (when, surplus) per hello
        self._ghost_warned = False
        self._surplus = 0

    @property
    def lease_s(self) -> float:
        return self._ledger.lease_s

    def room(self, held: int) -> int:
        """How many more slot links this replica may open now with `held` of its own (latest heartbeat's view)."""
        return max(0, min(self.allowed - held, self.limit - self.others_held() - held))

    def others_held(self) -> int:
        """Connections the other replicas hold, as of the latest heartbeat: Slack counts them too."""
        return sum(m.held for m in self._members if m.id != self._ledger.replica)

    def others_short(self) -> int:
        """Links the other replicas are owed by the split (`allocate`) and do not hold yet, as of the latest
        heartbeat. Spare links of this replica never stand in their way: a replica that starts while
        the others hold spares gets its share as the spares give way."""
        shares = allocate(self._members, self.limit) if self._members else {}
        return sum(max(0, shares.get(m.id, 0) - m.held) for m in self._members if m.id != self._ledger.replica)

    def _info(self) -> str:
        handled = self._telemetry.snapshot().envelopes_handled
        return json.dumps(
            {"name": self.name, "wish": self.wish, "started_at": self._started_at, "handled": handled},
            separators=(",", ":"),
        )

    async def beat(self) -> None:
        """Register (or stay registered), see who else is there, and recompute this replica's share."""
        if self._ledger.degraded:
            if not self._members and self.allowed == 0:
                # Started while Redis is unreachable: one link, so that this replica answers meanwhile.
                self._set_allowed(1, 1)
            self._publish()
            return
        try:
            infos, held = await self._scripts["beat"](
                args=[self._ledger.prefix, self._ledger.replica, self._info(), self.held, int(self.lease_s * 1000)]
            )
        except RedisError as e:
            self._ledger.lost(f"{type(e).__name__}: {e}")
            self._publish()
            return
        counts = {_text(held[i]): int(held[i + 1]) for i in range(0, len(held), 2)}
        members = []
        for i in range(0, len(infos), 2):
            member_id = _text(infos[i])
            try:
                info = json.loads(_text(infos[i + 1]))
                members.append(
                    Member(
                        member_id,
                        str(info["name"]),
                        int(info["wish"]),
                        counts.get(member_id, 0),
                        float(info["started_at"]),
                        int(info.get("handled", 0)),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
        self._members = members
        allowed = allocate(members, self.limit).get(self._ledger.replica, 0)
        self._set_allowed(allowed, len(members))
        self._publish()

    def _set_allowed(self, allowed: int, replicas: int) -> None:
        if allowed == self.allowed and self._agreed:
            return
        self._agreed = True
        before, self.allowed = self.allowed, allowed
        if allowed == 0:
            if not self._said_standby:
                log.warning(
                    "standby: Slack's %d connections for this app are all taken by the %d other replica(s); this "
                    "replica opens none and takes over as soon as one leaves",
                    self.limit,
                    replicas - 1,
                )
                self._said_standby = True
        else:
            if self._said_standby:
                log.info("no longer a standby: a connection of the cluster's budget is free for this replica")
                self._said_standby = False
            if allowed < self.wish:
                log.info(
                    "this replica may hold %d of the %d connection(s) it wishes (NONSTOP_CONNECTIONS): %d replicas "
                    "share Slack's %d",
                    allowed,
                    self.wish,
                    replicas,
                    self.limit,
                )
            elif before:
                log.info("this replica may hold all %d connection(s) it wishes again", allowed)
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()
        self.freed()

    async def acquire(self) -> bool:
        """Reserve one link of the cluster's budget; False when the replicas hold all of it (yet). How
        many slots this replica keeps is its share (`allowed`, the supervisor's slots obey it); spares
        and make-before-break replacements only need room in the whole."""
        self._asking()
        share = self.limit
        if self.held >= share:
            return False
        if self._ledger.degraded:
            # Redis cannot be asked: keep to the share last agreed (a link lost meanwhile may come back).
            self.held += 1
            return True
        try:
            granted = await self._scripts["acquire"](
                args=[self._ledger.prefix, self._ledger.replica, self.limit, share, int(self.lease_s * 1000)]
            )
        except RedisError as e:
            self._ledger.lost(f"{type(e).__name__}: {e}")
            return False
        if int(granted) == -1:  # our membership lapsed (Redis restarted empty, or we stalled): register first
            await self.beat()
            return False
        if int(granted) == 1:
            self.held += 1
            return True
        return False

    def release(self) -> None:
        """One link is gone (closed, dropped or never opened); the next heartbeat tells Redis."""
        self.held = max(0, self.held - 1)
        self.freed()

    async def leave(self) -> None:
        """A graceful stop: the budget this replica held is free for the others at once."""
        if self._ledger.degraded:
            return
        with contextlib.suppress(RedisError):  # else its heartbeat lapses within a lease anyway
            await self._leave(args=[self._ledger.prefix, self._ledger.replica])

    # -- the ghost guard -----------------------------------------------------------------------------

    def hello(self, num_connections: object) -> None:
        """Slack's count of this app's connections, from a new link's hello, against the members' own."""
        if not isinstance(num_connections, int) or self._ledger.degraded or not self._members:
            return
        ours = sum(m.held for m in self._members if m.id != self._ledger.replica) + self.held
        surplus = max(0, num_connections - ours)
        now = self._clock()
        self._surplus = surplus
        self._ghosts = [(at, n) for at, n in self._ghosts if now - at < 10 * self.lease_s] + [(now, surplus)]
        lasting = surplus > 0 and all(n > 0 for _, n in self._ghosts) and now - self._ghosts[0][0] >= 2 * self.lease_s
        if lasting and not self._ghost_warned:
            self._ghost_warned = True
            log.error(
                "GHOST CONNECTIONS: Slack counts %d connection(s) for this app, the replicas on this Redis hold %d: "
                "%d more belong to another process with the same app token (a forgotten laptop, an old deployment, "
                "a replica on another Redis or prefix), or are dead links Slack has not noticed yet. They take "
                "envelopes this cluster never sees and eat Slack's budget of %d. Find and stop that process, or give "
                "it an app of its own.",
                num_connections,
                ours,
                surplus,
                self.limit,
            )
        self._publish()

    def _publish(self) -> None:
        me = self._ledger.replica
        replicas = tuple(
            Replica(
                name=m.name,
                connections=self.held if m.id == me else m.held,
                started_at=m.started_at,
                events_handled=m.handled,
                this_one=m.id == me,
            )
            for m in sorted(self._members, key=lambda m: (m.started_at, m.id))
        )
        self._telemetry.set_cluster(
            ClusterView(
                replicas=replicas,
                budget=self.limit,
                allowed=self.allowed,
                redis_reachable=not self._ledger.degraded,
                ghost_connections=self._surplus,
            )
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


Share = LocalShare | ClusterShare
