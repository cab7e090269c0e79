"""`redis://HOST:PORT/DB` (or `rediss://`, TLS): one ledger shared by every replica of the bot.

Each admitted event is stored with its envelope, its run count and its owner, the replica running it.
Who is alive is the coordinator's business (`nonstop.coordination`): when a replica dies, a live one moves
the dead one's events to itself (`reassign`) and runs them. A done event is a key that expires after the
dedupe TTL, so Redis forgets it by itself. Every change is one Lua script: atomic, one round trip.

Redis is never a single point of failure for answering. While the shared connection is degraded
(`nonstop.net.redis`), events are admitted and deduplicated here, in this process, and the acks go on;
when Redis is usable again, `resync` hands it what happened meanwhile (this replica's running events,
recorded again, and the events it finished, marked done), in pieces. What is lost in between is only what
Redis would have known from other replicas: a retry that reaches another replica during the outage may run
twice. A Redis that restarts *empty* likewise forgets done events: a retry of one of them within the TTL
runs again (at most one double answer per retry).

Standalone Redis (or a primary with replicas); not Redis Cluster (the scripts touch keys they build).
Persistence is not required: see docs/replicas.md.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from nonstop.ledger.base import MAX_RUNS, Entry, Ledger, LedgerError, Recovered, checked_marks, load_envelope
from nonstop.net.redis import RedisConnection, RedisError

__all__ = ["RESYNC_PIECE", "RedisLedger"]

log = logging.getLogger("nonstop.ledger")

RESYNC_PIECE = 500
"""Keys per script call when handing Redis what happened while it was unusable (one call stays short)."""

# Each entry is (key, alias or '', envelope); an entry is known under its key or its alias (an older key).
_ADMIT = """
local p, me = ARGV[1], ARGV[2]
local function known(key)
  if key == '' then return false end
  return redis.call('EXISTS', p .. 'done:' .. key) == 1 or redis.call('HEXISTS', p .. 'envelope', key) == 1
end
local fresh = {}
for i = 3, #ARGV, 3 do
  local key, envelope = ARGV[i], ARGV[i + 2]
  if known(key) or known(ARGV[i + 1]) then
    fresh[#fresh + 1] = 0
  else
    redis.call('HSET', p .. 'envelope', key, envelope)
    redis.call('HSET', p .. 'runs', key, 1)
    redis.call('HSET', p .. 'owner', key, me)
    redis.call('SADD', p .. 'owned:' .. me, key)
    fresh[#fresh + 1] = 1
  end
end
return fresh
"""

_FORGET_PENDING = """
local function forget_pending(p, key)
  local owner = redis.call('HGET', p .. 'owner', key)
  if owner then redis.call('SREM', p .. 'owned:' .. owner, key) end
  redis.call('HDEL', p .. 'envelope', key)
  redis.call('HDEL', p .. 'runs', key)
  redis.call('HDEL', p .. 'owner', key)
end
"""

_FINISH = (
    _FORGET_PENDING
    + """
local p, ttl_ms = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV do
  redis.call('SET', p .. 'done:' .. ARGV[i], 1, 'PX', ttl_ms)
  forget_pending(p, ARGV[i])
end
return 1
"""
)

# A dead replica's events become `me`'s; one that already ran MAX_RUNS times is given up (marked done).
_REASSIGN = (
    _FORGET_PENDING
    + """
local p, from, me, ttl_ms, max_runs, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6])
local out = {}
local keys = redis.call('SMEMBERS', p .. 'owned:' .. from)
for i = 1, math.min(#keys, limit) do
  local key = keys[i]
  redis.call('SREM', p .. 'owned:' .. from, key)
  if redis.call('HGET', p .. 'owner', key) == from then
    local envelope = redis.call('HGET', p .. 'envelope', key) or ''
    local runs = tonumber(redis.call('HGET', p .. 'runs', key) or '0')
    if runs >= max_runs or envelope == '' then
      redis.call('SET', p .. 'done:' .. key, 1, 'PX', ttl_ms)
      forget_pending(p, key)
      out[#out + 1] = {key, envelope, runs, 0}
    else
      redis.call('HSET', p .. 'runs', key, runs + 1)
      redis.call('HSET', p .. 'owner', key, me)
      redis.call('SADD', p .. 'owned:' .. me, key)
      out[#out + 1] = {key, envelope, runs + 1, 1}
    end
  end
end
return out
"""
)

# Record again what Redis no longer has of `me`'s running events (it restarted empty, or they were admitted
# here while it was unusable), unless done; those another replica took meanwhile are reported as lost.
_RESTORE = """
local p, me = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV, 3 do
  local key, envelope, runs = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('EXISTS', p .. 'done:' .. key) == 0 then
    local owner = redis.call('HGET', p .. 'owner', key)
    if owner == false then
      redis.call('HSET', p .. 'envelope', key, envelope)
      redis.call('HSET', p .. 'runs', key, runs)
      redis.call('HSET', p .. 'owner', key, me)
      redis.call('SADD', p .. 'owned:' .. me, key)
    elseif owner ~= me then
      lost[#lost + 1] = key
    end
  end
end
return lost
"""

# A mark moves only forward: `micros` is the ts in microseconds, zero-padded to 20 digits, so that comparing
# the strings compares the numbers exactly (Lua's numbers are doubles).
_ADVANCE_MARKS = """
local p = ARGV[1]
for i = 2, #ARGV, 3 do
  local conversation, ts, micros = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local stored = redis.call('HGET', p .. 'mark_order', conversation)
  if not stored or micros > stored then
    redis.call('HSET', p .. 'mark_order', conversation, micros)
    redis.call('HSET', p .. 'marks', conversation, ts)
  end
end
return 1
"""

REASSIGN_BATCH = 200


class RedisLedger(Ledger):
    """Args:
    connection: the process's Redis connection (shared with the coordinator).
    ttl_s: how long done events are remembered.
    owner: this replica's name in the ledger (the coordinator's member id).
    prefix: the keys' prefix (several bots on one Redis).
    """

    def __init__(
        self,
        connection: RedisConnection,
        ttl_s: float,
        *,
        owner: str,
        prefix: str = "nonstop",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = connection.url
        self.owner = owner
        self._conn = connection
        self._ttl_s = ttl_s
        self._prefix = f"{prefix}:"
        self._clock = clock
        self._mine: dict[str, Entry] = {}  # admitted or taken over here, not finished
        self._finished_offline: list[str] = []  # finished while Redis was unusable: to mark done
        self._recent: OrderedDict[str, float] = OrderedDict()  # finished here: local dedupe while Redis is unusable
        client = connection.client
        self._scripts = {
            name: client.register_script(body)
            for name, body in (
                ("admit", _ADMIT),
                ("finish", _FINISH),
                ("reassign", _REASSIGN),
                ("restore", _RESTORE),
                ("advance_marks", _ADVANCE_MARKS),
            )
        }

    async def open(self) -> Recovered:
        return Recovered([], [])  # a dead replica's events come through `reassign`, once it is known dead

    async def admit(self, entries: list[Entry]) -> list[bool]:
        # What runs or finished here is known whatever Redis says: it may not have heard of it yet (an outage
        # just ended and the resync is still under way). Only the rest is Redis's to judge.
        known = [self._here(entry.key) or (entry.alias is not None and self._here(entry.alias)) for entry in entries]
        unknown = [entry for entry, here in zip(entries, known, strict=True) if not here]
        fresh = iter(await self._admit_unknown(unknown) if unknown else [])
        return [False if here else next(fresh) for here in known]

    async def _admit_unknown(self, entries: list[Entry]) -> list[bool]:
        if not self._conn.degraded:
            args: list[Any] = [self._prefix, self.owner]
            for entry in entries:
                args += [entry.key, entry.alias or "", entry.envelope_json()]
            started = self._conn.now()
            try:
                answer = await self._scripts["admit"](args=args)
            except RedisError as e:
                self._conn.failed(e)
            else:
                self._conn.answered(started)  # slow: the next admission is local
                fresh = [bool(int(x)) for x in answer]
                for entry, new in zip(entries, fresh, strict=True):
                    if new:
                        self._mine[entry.key] = entry
                return fresh
        return self._admit_here(entries)

    def _here(self, key: str) -> bool:
        return key in self._mine or key in self._recent

    def _admit_here(self, entries: list[Entry]) -> list[bool]:
        fresh: list[bool] = []
        for entry in entries:
            known = self._here(entry.key) or (entry.alias is not None and self._here(entry.alias))
            if not known:
                self._mine[entry.key] = Entry(entry.key, entry.envelope, max(1, entry.runs), entry.text)
            fresh.append(not known)
        return fresh

    async def finish(self, keys: list[str]) -> None:
        now = self._clock()
        for key in keys:
            self._mine.pop(key, None)
            self._recent[key] = now
            self._recent.move_to_end(key)
        if self._conn.degraded:
            self._finished_offline += keys
            return
        started = self._conn.now()
        try:
            await self._scripts["finish"](args=[self._prefix, int(self._ttl_s * 1000), *keys])
        except RedisError as e:
            self._finished_offline += keys
            self._conn.failed(e)
        else:
            self._conn.answered(started)

    async def reassign(self, dead: str) -> Recovered:
        """Move the events of replica `dead` to this one (their runs counted) and hand them back to run here;
        those that already ran `MAX_RUNS` times are given up. Raises `RedisError`."""
        unfinished: list[Entry] = []
        given_up: list[Entry] = []
        while True:
            rows = await self._scripts["reassign"](
                args=[self._prefix, dead, self.owner, int(self._ttl_s * 1000), MAX_RUNS, REASSIGN_BATCH]
            )
            for key, envelope, runs, run in rows:
                entry = Entry(_text(key), load_envelope(_text(envelope)), int(runs))
                if int(run):
                    self._mine[entry.key] = entry
                    unfinished.append(entry)
                else:
                    given_up.append(entry)
            if len(rows) < REASSIGN_BATCH:
                return Recovered(unfinished, given_up)

    async def resync(self) -> None:
        """Hand Redis what it missed: events finished while it was unusable (marked done) and this replica's
        running events (recorded again where Redis no longer has them), a piece at a time. Raises `RedisError`."""
        while self._finished_offline:
            piece = self._finished_offline[:RESYNC_PIECE]
            await self._scripts["finish"](args=[self._prefix, int(self._ttl_s * 1000), *piece])
            del self._finished_offline[: len(piece)]
        mine = list(self._mine.values())
        lost: list[str] = []
        for at in range(0, len(mine), RESYNC_PIECE):
            args: list[Any] = [self._prefix, self.owner]
            for entry in mine[at : at + RESYNC_PIECE]:
                args += [entry.key, entry.envelope_json(), entry.runs or 1]
            lost += [_text(key) for key in await self._scripts["restore"](args=args)]
        for key in lost:
            log.warning("event %s was taken over by another replica while this one could not reach Redis", key)

    async def prune(self) -> int:
        """Redis forgets done events by itself (each expires after the TTL); here only the local memory."""
        cutoff = self._clock() - self._ttl_s
        gone = 0
        while self._recent and next(iter(self._recent.values())) < cutoff:
            self._recent.popitem(last=False)
            gone += 1
        return gone

    async def marks(self) -> dict[str, str]:
        """The shared marks. Raises `LedgerError` while Redis is unusable: a scan waits for it (a replica's own
        marks would move back what another one recorded)."""
        self._usable("read the catch-up marks")
        started = self._conn.now()
        try:
            stored = await self._conn.client.hgetall(f"{self._prefix}marks")
        except RedisError as e:
            self._conn.failed(e)
            raise LedgerError(f"cannot read the catch-up marks from Redis at {self.url}: {e}") from None
        self._conn.answered(started)
        return {_text(conversation): _text(ts) for conversation, ts in stored.items()}

    async def advance_marks(self, marks: dict[str, str]) -> None:
        checked = checked_marks(marks)
        if not checked:
            return
        self._usable("record the catch-up marks")
        args: list[Any] = [self._prefix]
        for conversation, (ts, micros) in checked.items():
            args += [conversation, ts, f"{micros:020d}"]
        started = self._conn.now()
        try:
            await self._scripts["advance_marks"](args=args)
        except RedisError as e:
            self._conn.failed(e)
            raise LedgerError(f"cannot record the catch-up marks in Redis at {self.url}: {e}") from None
        self._conn.answered(started)

    def _usable(self, what: str) -> None:
        if self._conn.degraded:
            raise LedgerError(f"cannot {what}: Redis at {self.url} is unusable now")

    async def close(self) -> None:
        """Nothing of its own to release: unfinished events move to the other replicas when this one leaves
        the membership (`Coordinator.leave`), and the connection belongs to the process."""

    @property
    def durable(self) -> bool:
        return True

    @property
    def running_here(self) -> int:
        """Events admitted or taken over here and not finished."""
        return len(self._mine)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
