"""`ClusterShare`: a replica's share of Slack's connections, agreed with the other replicas through Redis.

Each replica registers with a heartbeat (its name, the links it holds, its wish, when it started, how many
events it handled); a member whose heartbeat lapses is gone, with its links, and joins the list of the dead,
whose events a live replica takes over (`nonstop.coordination.redis`). From the members, every replica
computes the same split (`allocate`); replicas past the tenth wait as standbys. A reservation is taken
atomically against the links *held* (not the split) before a link is opened, so a newcomer waits until an
older replica has closed the link it gave up: the cluster never holds more than 10.

The ghost guard compares Slack's own count (`hello`'s `num_connections`) with the links the members hold: a
surplus that lasts means another process uses the same app token.

Time is Redis's own clock (`TIME`), so replicas on hosts with skewed clocks agree on when a heartbeat lapsed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from nonstop.coordination.allocation import SLACK_CONNECTION_LIMIT, Member, allocate
from nonstop.coordination.share import Room
from nonstop.net.redis import RedisConnection, RedisError
from nonstop.status import ClusterView, Replica

__all__ = ["ClusterShare"]

log = logging.getLogger("nonstop.cluster")

_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Every script first forgets the members whose heartbeat lapsed (with what they held): they are dead.
_EXPIRE_MEMBERS = (
    _NOW_MS
    + """for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'members', '-inf', now_ms)) do
  redis.call('ZREM', p .. 'members', id)
  redis.call('HDEL', p .. 'member', id)
  redis.call('HDEL', p .. 'held', id)
  redis.call('SADD', p .. 'dead', id)
end
"""
)

_BEAT = (
    "local p, me, info, held, lease_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])\n"
    + _EXPIRE_MEMBERS
    + """local was = redis.call('ZSCORE', p .. 'members', me)
redis.call('ZADD', p .. 'members', now_ms + lease_ms, me)
redis.call('HSET', p .. 'member', me, info)
redis.call('HSET', p .. 'held', me, held)
local dead = {}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'dead')) do
  if redis.call('ZSCORE', p .. 'members', id) then
    redis.call('SREM', p .. 'dead', id)  -- it beat again: alive after all
  else
    dead[#dead + 1] = id
  end
end
return {redis.call('HGETALL', p .. 'member'), redis.call('HGETALL', p .. 'held'), was and 1 or 0, dead}
"""
)

# One more link for `me`, if the links held by live members leave room and its share allows it.
_ACQUIRE = (
    "local p, me, limit, share = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    + _EXPIRE_MEMBERS
    + """if redis.call('ZSCORE', p .. 'members', me) == false then
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

# A graceful stop: the links are free for the others at once, and what did not finish here moves at their
# next heartbeat.
_LEAVE = """
local p, me = ARGV[1], ARGV[2]
redis.call('ZREM', p .. 'members', me)
redis.call('HDEL', p .. 'member', me)
redis.call('HDEL', p .. 'held', me)
redis.call('SADD', p .. 'dead', me)
return 1
"""

_BURIED = """
redis.call('SREM', ARGV[1] .. 'dead', ARGV[2])
return 1
"""


class ClusterShare(Room):
    """Args:
    connection: the process's Redis connection.
    prefix: the keys' prefix (with its trailing colon).
    member: this replica's id (unique: host and pid).
    name: this replica's name in status and logs.
    wish: the links it wishes to hold (NONSTOP_CONNECTIONS).
    lease_s: how long a heartbeat holds; the others take over after it lapses.
    handled: how many events this replica has handled (shown to the others).
    """

    def __init__(
        self,
        connection: RedisConnection,
        *,
        prefix: str,
        member: str,
        name: str,
        wish: int,
        lease_s: float,
        handled: Callable[[], int],
        limit: int = SLACK_CONNECTION_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._conn = connection
        self._prefix = prefix
        self.member = member
        self.name = name
        self.wish = wish
        self.limit = limit
        self.lease_s = lease_s
        self.held = 0
        self.allowed = 0  # nothing until the first heartbeat has seen the others
        self._agreed = False  # whether a heartbeat (or an outage at start) has set `allowed` yet
        self.changed = asyncio.Event()  # set (and replaced) whenever `allowed` changes
        self.dead: list[str] = []  # members whose heartbeat lapsed, as of the latest heartbeat
        self.was_member = True  # whether Redis still knew this replica at the latest heartbeat
        self.view: ClusterView | None = None
        self._handled = handled
        self._clock = clock
        self._started_at = time.time()
        self._members: list[Member] = []
        client = connection.client
        self._scripts = {
            key: client.register_script(body)
            for key, body in (("beat", _BEAT), ("acquire", _ACQUIRE), ("leave", _LEAVE), ("buried", _BURIED))
        }
        self._said_standby = False
        self._ghosts: list[tuple[float, int]] = []  # (when, surplus) per hello
        self._ghost_warned = False
        self._surplus = 0

    @property
    def recheck_s(self) -> float:
        return max(0.1, self.lease_s / 6)

    def others_held(self) -> int:
        """Connections the other replicas hold, as of the latest heartbeat: Slack counts them too."""
        return sum(m.held for m in self._members if m.id != self.member)

    def others_short(self) -> int:
        """Links the other replicas are owed by the split (`allocate`) and do not hold yet, as of the latest
        heartbeat. Spare links of this replica never stand in their way: a replica that starts while the
        others hold spares gets its share as the spares give way."""
        shares = allocate(self._members, self.limit) if self._members else {}
        return sum(max(0, shares.get(m.id, 0) - m.held) for m in self._members if m.id != self.member)

    def key(self, name: str) -> str:
        """The Redis key of `name` among this cluster's keys."""
        return f"{self._prefix}{name}"

    async def beat(self) -> None:
        """Register (or stay registered), see who else is there and who died, and recompute this replica's
        share. Raises `RedisError` (the caller judges the connection)."""
        info = json.dumps(
            {"name": self.name, "wish": self.wish, "started_at": self._started_at, "handled": self._handled()},
            separators=(",", ":"),
        )
        infos, held, was, dead = await self._scripts["beat"](
            args=[self._prefix, self.member, info, self.held, int(self.lease_s * 1000)]
        )
        counts = {_text(held[i]): int(held[i + 1]) for i in range(0, len(held), 2)}
        members = []
        for i in range(0, len(infos), 2):
            try:
                fields = json.loads(_text(infos[i + 1]))
                member_id = _text(infos[i])
                members.append(
                    Member(
                        member_id,
                        str(fields["name"]),
                        int(fields["wish"]),
                        counts.get(member_id, 0),
                        float(fields["started_at"]),
                        int(fields.get("handled", 0)),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
        self._members = members
        self.was_member = bool(int(was))
        self.dead = [_text(d) for d in dead]
        self._set_allowed(allocate(members, self.limit).get(self.member, 0), len(members))
        self.others_moved()
        self.publish()

    def standalone(self) -> None:
        """Started while Redis is unusable: one link, so that this replica answers meanwhile."""
        if not self._members and self.allowed == 0:
            self._set_allowed(1, 1)
        self.publish()

    async def buried(self, dead: str) -> None:
        """`dead`'s events have all been taken over: off the list. Raises `RedisError`."""
        await self._scripts["buried"](args=[self._prefix, dead])

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
        """Reserve one link of the cluster's budget; False when the replicas hold all of it (yet). How many
        slots this replica keeps is its share (`allowed`, the slots obey it); spares and make-before-break
        replacements only need room in the whole."""
        self.asking()
        if self.held >= self.limit:
            return False
        if self._conn.degraded:
            # Redis cannot be asked: keep to the share last agreed (a link lost meanwhile may come back).
            self.held += 1
            return True
        try:
            granted = int(await self._scripts["acquire"](args=[self._prefix, self.member, self.limit, self.limit]))
        except RedisError as e:
            self._conn.failed(e)
            return False
        if granted == -1:  # our membership lapsed (Redis restarted empty, or we stalled): register first
            try:
                await self.beat()
            except RedisError as e:
                self._conn.failed(e)
            return False
        if granted == 1:
            self.held += 1
            return True
        return False

    def release(self) -> None:
        """One link is gone (closed, dropped or never opened); the next heartbeat tells Redis."""
        self.held = max(0, self.held - 1)
        self.freed()

    async def leave(self) -> None:
        """A graceful stop: this replica's links are free for the others at once, and its unfinished events
        move to them at their next heartbeat. Raises `RedisError`."""
        await self._scripts["leave"](args=[self._prefix, self.member])

    # -- the ghost guard ---------------------------------------------------------------------------

    def hello(self, num_connections: object, open_here: int) -> None:
        """Slack's count of this app's connections, from a new link's hello, against the members' own: the
        links open here (not those reserved and still connecting, which Slack cannot count yet) and the
        others' (as of their latest heartbeat)."""
        if not isinstance(num_connections, int) or self._conn.degraded or not self._members:
            return
        ours = self.others_held() + open_here
        surplus = max(0, num_connections - ours)
        now = self._clock()
        self._surplus = surplus
        self._ghosts = [(at, n) for at, n in self._ghosts if now - at < 10 * self.lease_s] + [(now, surplus)]
        # A hello that races a link of ours being dropped shows no surplus for a moment: judge the whole window.
        positive = sum(1 for _, n in self._ghosts if n > 0)
        lasting = surplus > 0 and positive >= 0.75 * len(self._ghosts) and now - self._ghosts[0][0] >= 2 * self.lease_s
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
        self.publish()

    def publish(self) -> None:
        """Refresh `view`, what status shows of the cluster."""
        replicas = tuple(
            Replica(
                name=m.name,
                connections=self.held if m.id == self.member else m.held,
                started_at=m.started_at,
                events_handled=m.handled,
                this_one=m.id == self.member,
            )
            for m in sorted(self._members, key=lambda m: (m.started_at, m.id))
        )
        self.view = ClusterView(
            replicas=replicas,
            budget=self.limit,
            allowed=self.allowed,
            redis_reachable=not self._conn.degraded,
            ghost_connections=self._surplus,
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
