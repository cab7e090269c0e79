"""`redis://HOST:PORT/DB` (or `rediss://`, TLS): one ledger shared by every replica of the bot.

Each event is *claimed* when it is admitted: its envelope, its run count and a lease that names the
replica running it. The replica renews the leases of its running events (`renew`); when a replica
dies, its leases run out and a live replica takes its events over (`takeover`) and runs them. A done
event is a key that expires after the dedupe TTL, so Redis forgets it by itself.

Every change is one Lua script (atomic on the server, one round trip), and time is Redis's own
clock (`TIME`), so replicas on hosts with skewed clocks still agree on when a lease ran out.

Redis is never a single point of failure for answering. When a call fails, the ledger goes
*degraded*: events are admitted and deduplicated here, in this process, and the acks go on; a probe
(every `renew`) notices Redis back and hands it what happened meanwhile (this replica's running
events, claimed again, and the events it finished, marked done). What is lost in between is only
what Redis would have known from other replicas: a retry that reaches another replica during the
outage may run twice. A Redis that restarts *empty* likewise forgets done events: a retry of one of
them within the TTL runs again (at most one double answer per retry); running events are claimed
again by their replicas at the next renewal.

Standalone Redis (or a primary with replicas); not Redis Cluster (the scripts touch keys they build).
Persistence is not required: see docs/replicas.md.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)

from nonstop.ledger.base import MAX_RUNS, Entry, Ledger, LedgerError, Recovered

log = logging.getLogger("nonstop.ledger")

DEFAULT_LEASE_S = 10.0
"""How long a claim holds without renewal. It is the delay before a dead replica's events run
elsewhere, so it is short (a user waits that long for an answer after a crash, plus Slack's own
retry schedule is no help: those events were already acked). It is renewed every third of it, so a
live replica must miss three renewals in a row (a stalled loop, a Redis blip) before another replica
would run its events a second time. 10 s keeps both well inside the ~15 s a crash may cost."""

TAKEOVER_BATCH = 200

REDIS_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
"""Lua: `now_ms`, Redis's own clock in milliseconds (every replica's leases are judged on one clock)."""

_ADMIT = (
    """
local p, me, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
"""
    + REDIS_NOW_MS
    + """local until_ms = now_ms + lease_ms
local fresh = {}
for i = 4, #ARGV, 2 do
  local key, envelope = ARGV[i], ARGV[i + 1]
  if redis.call('EXISTS', p .. 'done:' .. key) == 1 or redis.call('HEXISTS', p .. 'envelope', key) == 1 then
    fresh[#fresh + 1] = 0
  else
    redis.call('HSET', p .. 'envelope', key, envelope)
    redis.call('HSET', p .. 'runs', key, 1)
    redis.call('HSET', p .. 'owner', key, me)
    redis.call('ZADD', p .. 'lease', until_ms, key)
    fresh[#fresh + 1] = 1
  end
end
return fresh
"""
)

_FINISH = """
local p, ttl_ms = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV do
  local key = ARGV[i]
  redis.call('SET', p .. 'done:' .. key, 1, 'PX', ttl_ms)
  redis.call('HDEL', p .. 'envelope', key)
  redis.call('HDEL', p .. 'runs', key)
  redis.call('HDEL', p .. 'owner', key)
  redis.call('ZREM', p .. 'lease', key)
end
return 1
"""

# Renew this replica's claims; a claim Redis no longer has (it restarted empty, or the events were
# admitted here while it was unreachable) is made again, unless the event is done already.
_RENEW = (
    """
local p, me, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
"""
    + REDIS_NOW_MS
    + """local until_ms = now_ms + lease_ms
local lost = {}
for i = 4, #ARGV, 3 do
  local key, envelope, runs = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('EXISTS', p .. 'done:' .. key) == 0 then
    local owner = redis.call('HGET', p .. 'owner', key)
    if owner == false then
      redis.call('HSET', p .. 'envelope', key, envelope)
      redis.call('HSET', p .. 'runs', key, runs)
      redis.call('HSET', p .. 'owner', key, me)
      redis.call('ZADD', p .. 'lease', until_ms, key)
    elseif owner == me then
      redis.call('ZADD', p .. 'lease', until_ms, key)
    else
      lost[#lost + 1] = key
    end
  end
end
return lost
"""
)

# Expired claims become this replica's. One that already ran MAX_RUNS times is given up (marked done).
_TAKEOVER = (
    """
local p, me, lease_ms, ttl_ms, max_runs, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), tonumber(ARGV[6])
"""
    + REDIS_NOW_MS
    + """local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', p .. 'lease', '-inf', now_ms, 'LIMIT', 0, limit)) do
  local envelope = redis.call('HGET', p .. 'envelope', key) or ''
  local runs = tonumber(redis.call('HGET', p .. 'runs', key) or '0')
  local owner = redis.call('HGET', p .. 'owner', key) or ''
  if runs >= max_runs or envelope == '' then
    redis.call('SET', p .. 'done:' .. key, 1, 'PX', ttl_ms)
    redis.call('HDEL', p .. 'envelope', key)
    redis.call('HDEL', p .. 'runs', key)
    redis.call('HDEL', p .. 'owner', key)
    redis.call('ZREM', p .. 'lease', key)
    out[#out + 1] = {key, envelope, runs, owner, 0}
  else
    redis.call('HSET', p .. 'runs', key, runs + 1)
    redis.call('HSET', p .. 'owner', key, me)
    redis.call('ZADD', p .. 'lease', now_ms + lease_ms, key)
    out[#out + 1] = {key, envelope, runs + 1, owner, 1}
  end
end
return out
"""
)

# Hand this replica's unfinished claims to the others at once (a graceful stop), instead of after the lease.
_RELEASE = """
local p, me = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  local key = ARGV[i]
  if redis.call('HGET', p .. 'owner', key) == me then
    redis.call('ZADD', p .. 'lease', 0, key)
  end
end
return 1
"""


def default_replica_name() -> str:
    """The pod's name under Kubernetes (HOSTNAME), the host name elsewhere; with the pid, as several
    replicas may share a host."""
    host = os.environ.get("HOSTNAME") or socket.gethostname() or "replica"
    return f"{host}:{os.getpid()}"


def redact_url(url: str) -> str:
    """`url` without its password, for log lines and messages (even when the URL is malformed)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    credentials, host = parts.netloc.rsplit("@", 1)
    user, has_password, _ = credentials.partition(":")
    shown = f"{user}:…@" if has_password and user else "…@"
    return urlunsplit((parts.scheme, shown + host, parts.path, parts.query, parts.fragment))


class RedisLedger(Ledger):
    def __init__(
        self,
        url: str,
        ttl_s: float,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        replica: str | None = None,
        prefix: str = "nonstop",
        clock: Callable[[], float] = time.monotonic,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.url = redact_url(url)
        self.lease_s = lease_s
        self.replica = replica or default_replica_name()
        self._raw_url = url
        self._ttl_s = ttl_s
        self._prefix = f"{prefix}:"
        self._clock = clock
        self._client = client
        self._mine: dict[str, Entry] = {}  # admitted or taken over here, not finished: ours to renew
        self._finished_offline: list[str] = []  # finished while Redis was unreachable: to mark done
        self._recent: OrderedDict[str, float] = OrderedDict()  # finished here: local dedupe during an outage
        self._degraded_since: float | None = None
        self._reachable_since: float | None = None
        self._on_change: list[Callable[[bool], None]] = []

    # -- shared with the cluster membership ----------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise LedgerError(f"the ledger on {self.url} is not open")
        return self._client

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def degraded(self) -> bool:
        """Redis is unreachable: this replica deduplicates and records on its own meanwhile."""
        return self._degraded_since is not None

    def reachable_for(self) -> float:
        """Seconds since Redis last became reachable (0 while degraded)."""
        if self._reachable_since is None:
            return 0.0
        return self._clock() - self._reachable_since

    def on_reachability(self, callback: Callable[[bool], None]) -> None:
        """`callback(reachable)` whenever Redis is lost or found again."""
        self._on_change.append(callback)

    def lost(self, why: str) -> None:
        if self._degraded_since is None:
            self._degraded_since = self._clock()
            self._reachable_since = None
            log.warning(
                "Redis unreachable (%s): answering on, deduplicating and recording events in this replica "
                "until it is back",
                why,
            )
            for callback in self._on_change:
                callback(False)

    def _found(self) -> None:
        if self._degraded_since is not None:
            log.warning(
                "Redis reachable again after %.1f s: handed it %d running and %d finished event(s)",
                self._clock() - self._degraded_since,
                len(self._mine),
                len(self._finished_offline),
            )
            self._degraded_since = None
            for callback in self._on_change:
                callback(True)
        if self._reachable_since is None:
            self._reachable_since = self._clock()

    # -- Ledger --------------------------------------------------------------------------------------

    async def open(self) -> Recovered:
        if self._client is None:
            tls: dict[str, Any] = {}
            if urlsplit(self._raw_url).scheme == "rediss":
                # Verified always; extra CAs from the same variables as the Web API's and the WebSockets' TLS.
                tls = {
                    "ssl_cert_reqs": "required",
                    "ssl_check_hostname": True,
                    "ssl_ca_certs": os.environ.get("SSL_CERT_FILE", "").strip() or None,
                    "ssl_ca_path": os.environ.get("SSL_CERT_DIR", "").strip() or None,
                }
            try:
                self._client = aioredis.Redis.from_url(
                    self._raw_url,
                    **tls,
                    # Redis answers in well under a millisecond; a call that takes a second means it is gone,
                    # and an ack waiting on it must still leave within Slack's 3 s: degrade instead.
                    socket_timeout=1.0,
                    socket_connect_timeout=1.0,
                    retry=Retry(NoBackoff(), 0),  # no hidden retries: on failure, degrade at once
                    health_check_interval=0,
                )
            except (ValueError, RedisError) as e:
                raise LedgerError(f"cannot use {self.url}: {e}") from None
        self._scripts = {
            name: self._client.register_script(body)
            for name, body in (
                ("admit", _ADMIT),
                ("finish", _FINISH),
                ("renew", _RENEW),
                ("takeover", _TAKEOVER),
                ("release", _RELEASE),
            )
        }
        try:
            await self._client.ping()
        except (AuthenticationError, AuthorizationError, NoPermissionError) as e:
            # Not an outage: a wrong password or user will not fix itself, and a person must act.
            raise LedgerError(
                f"Redis at {self.url} refused this client ({type(e).__name__}: {e}): check the "
                "password (and user) in NONSTOP_LEDGER"
            ) from None
        except ResponseError as e:
            if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
                raise LedgerError(f"Redis at {self.url} needs a password: redis://:PASSWORD@HOST:PORT/DB") from None
            self.lost(f"{type(e).__name__}: {e}")
            return Recovered([], [])
        except RedisError as e:
            if _certificate_refused(e):
                raise LedgerError(
                    f"the TLS certificate of Redis at {self.url} does not verify ({e}): trust its CA with "
                    "SSL_CERT_FILE or SSL_CERT_DIR, or fix the host name in NONSTOP_LEDGER"
                ) from None
            # Start anyway: answering does not need Redis (see the module's docstring).
            self.lost(f"{type(e).__name__}: {e}")
            return Recovered([], [])
        self._found()
        return Recovered([], [])  # a dead replica's events come through takeover() once their lease ran out

    async def admit(self, entries: list[Entry]) -> list[bool]:
        if not self.degraded:
            args: list[Any] = [self._prefix, self.replica, int(self.lease_s * 1000)]
            for entry in entries:
                args += [entry.key, entry.envelope_json()]
            try:
                answer = await self._scripts["admit"](args=args)
            except RedisError as e:
                self.lost(f"{type(e).__name__}: {e}")
            else:
                fresh = [bool(int(x)) for x in answer]
                for entry, new in zip(entries, fresh, strict=True):
                    if new:
                        self._mine[entry.key] = entry
                return fresh
        return self._admit_here(entries)

    def _admit_here(self, entries: list[Entry]) -> list[bool]:
        fresh: list[bool] = []
        for entry in entries:
            known = entry.key in self._mine or entry.key in self._recent
            if not known:
                self._mine[entry.key] = Entry(entry.key, entry.envelope, max(1, entry.runs))
            fresh.append(not known)
        return fresh

    async def finish(self, keys: list[str]) -> None:
        now = self._clock()
        for key in keys:
            self._mine.pop(key, None)
            self._recent[key] = now
            self._recent.move_to_end(key)
        if self.degraded:
            self._finished_offline += keys
            return
        try:
            await self._scripts["finish"](args=[self._prefix, int(self._ttl_s * 1000), *keys])
        except RedisError as e:
            self._finished_offline += keys
            self.lost(f"{type(e).__name__}: {e}")

    async def renew(self, keys: list[str]) -> None:
        """Extend the leases of `keys` (this replica's running events); also the probe that ends an outage."""
        mine = [self._mine[k] for k in keys if k in self._mine]
        args: list[Any] = [self._prefix, self.replica, int(self.lease_s * 1000)]
        for entry in mine:
            args += [entry.key, entry.envelope_json(), entry.runs or 1]
        try:
            if self._finished_offline:
                done, self._finished_offline = self._finished_offline, []
                try:
                    await self._scripts["finish"](args=[self._prefix, int(self._ttl_s * 1000), *done])
                except RedisError:
                    self._finished_offline = done + self._finished_offline
                    raise
            lost = await self._scripts["renew"](args=args)
        except RedisError as e:
            self.lost(f"{type(e).__name__}: {e}")
            return
        self._found()
        for key in lost:
            log.warning("event %s was taken over by another replica while this one could not renew it", _text(key))

    async def takeover(self) -> Recovered:
        """Claim the events whose lease ran out (their replica died or stopped) and return them to run here."""
        if self.degraded or self.reachable_for() < self.lease_s:
            # Just back from an outage (or just started): live replicas first renew what they hold,
            # which they do every third of a lease, so nothing of theirs is mistaken for a dead one's.
            return Recovered([], [])
        try:
            rows = await self._scripts["takeover"](
                args=[
                    self._prefix,
                    self.replica,
                    int(self.lease_s * 1000),
                    int(self._ttl_s * 1000),
                    MAX_RUNS,
                    TAKEOVER_BATCH,
                ]
            )
        except RedisError as e:
            self.lost(f"{type(e).__name__}: {e}")
            return Recovered([], [])
        unfinished: list[Entry] = []
        given_up: list[Entry] = []
        for key, envelope, runs, owner, run in rows:
            entry = Entry(_text(key), _load(_text(envelope)), int(runs))
            if int(run):
                if _text(owner) == self.replica and entry.key in self._mine:
                    continue  # our own, still running here (a renewal came late): keep it as it is
                self._mine[entry.key] = entry
                unfinished.append(entry)
            else:
                given_up.append(entry)
        return Recovered(unfinished, given_up)

    async def prune(self) -> int:
        """Redis forgets done events by itself (each expires after the TTL); here only the local memory."""
        cutoff = self._clock() - self._ttl_s
        gone = 0
        while self._recent and next(iter(self._recent.values())) < cutoff:
            self._recent.popitem(last=False)
            gone += 1
        return gone

    async def close(self) -> None:
        """Hand what did not finish here to the other replicas now (they take it over at their next look)."""
        if self._client is None:
            return
        keys = list(self._mine)
        if keys and not self.degraded:
            try:
                await self._scripts["release"](args=[self._prefix, self.replica, *keys])
            except RedisError as e:
                log.warning(
                    "could not hand %d unfinished event(s) over at once: %s; they move when their lease ends",
                    len(keys),
                    e,
                )
        await self._client.aclose()
        self._client = None

    @property
    def durable(self) -> bool:
        return True


def _certificate_refused(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _load(envelope: str) -> dict[str, Any]:
    try:
        value = json.loads(envelope) if envelope else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
