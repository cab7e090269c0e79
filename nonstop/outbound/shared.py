"""Rate-limit buckets shared by replicas on Redis: Slack's limits are per app per workspace, not per process.

One hash per bucket key (`<prefix>:rate:<key>`: tokens, when counted, blocked until), changed only by two
Lua scripts that read Redis's own clock (`TIME`), so replicas with drifting clocks agree:

- `take`: refill, then take a token, or answer how long to wait (a Retry-After still running, or the time
  until the next token).
- `block`: a 429 seen by any replica empties the bucket and closes it for exactly `Retry-After` for all.

Unlike a process alone (`nonstop.outbound.governor`, optimistic until Slack's first 429), replicas use the
documented limit from the start: several processes learning the same limit at once would each draw a 429.
If Redis cannot be reached the driver goes on with its local buckets (a 429 more is possible, an answer lost
is not); the scripts keep nothing longer than a minute past its last use.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from nonstop.net.redis import tls_options
from nonstop.outbound.limits import Limit

__all__ = ["AsyncSharedBuckets", "SharedBuckets"]

log = logging.getLogger("nonstop.outbound")

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

_TAKE = (
    _CLOCK
    + """
local per_s, burst, keep_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'blocked')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
local blocked = tonumber(state[3]) or 0
tokens = math.min(burst, tokens + math.max(0, now - at) * per_s)
local wait = 0
if blocked > now then
  wait = blocked - now
elseif tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / per_s
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now), 'blocked', tostring(blocked))
redis.call('PEXPIRE', KEYS[1], keep_ms + math.ceil(math.max(0, blocked - now) * 1000))
return tostring(wait)
"""
)

_BLOCK = (
    _CLOCK
    + """
local retry_after, keep_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local blocked = math.max(tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0'), now + retry_after)
redis.call('HSET', KEYS[1], 'tokens', '0', 'at', tostring(now), 'blocked', tostring(blocked))
redis.call('PEXPIRE', KEYS[1], keep_ms + math.ceil(retry_after * 1000))
return tostring(blocked - now)
"""
)

KEEP_MS = 60_000
"""A bucket unused for this long is full again anyway (every limit refills its burst within a minute)."""


class SharedBuckets:
    """The buckets of every replica of one app, on one Redis. Requires the `redis` package (the replicas'
    extra), like the ledger that names this Redis.

    Args:
        client: a sync `redis.Redis` of its own (see `from_url`): its calls are made by sender threads, and
            the process's shared connection (`nonstop.net.redis`) is an asyncio one, on the loop that acks.
        prefix: the key prefix of the replicas' ledger (`?prefix=` of NONSTOP_LEDGER, default "nonstop").
    """

    def __init__(self, client: redis.Redis, prefix: str = "nonstop") -> None:
        self._client = client
        self._prefix = f"{prefix}:rate:"
        self._take = client.register_script(_TAKE)
        self._block = client.register_script(_BLOCK)
        self._reachable = True

    @classmethod
    def from_url(cls, url: str) -> SharedBuckets:
        """A client of its own for NONSTOP_LEDGER's Redis (`_client_options`)."""
        plain, prefix, options = _client_options(url)
        return cls(redis.Redis.from_url(plain, retry=Retry(NoBackoff(), 0), **options), prefix)

    def take(self, key: str, limit: Limit) -> float:
        """Take a token from `key`'s bucket; return 0, or the seconds to wait first (nothing taken then)."""
        return self._run(self._take, key, [limit.per_s, limit.burst, KEEP_MS])

    def block(self, key: str, limit: Limit, retry_after_s: float) -> None:
        """Slack said 429 for `key`: every replica waits `retry_after_s` from now."""
        self._run(self._block, key, [retry_after_s, KEEP_MS])

    def _run(self, script: Any, key: str, args: list[float]) -> float:
        try:
            wait = float(script(keys=[self._prefix + key], args=args))
        except redis.RedisError as e:
            self._reachable = _said(self._reachable, e)
            raise
        self._reachable = _said(self._reachable, None)
        return wait

    def close(self) -> None:
        self._client.close()


def _said(reachable: bool, error: BaseException | None) -> bool:
    """Say once when Redis stops answering the buckets' scripts (`error`) and once when it is back; whether it is
    reachable now."""
    if error is not None and reachable:
        log.warning("shared rate limits unavailable (%s): each replica keeps its own until Redis is back", error)
    elif error is None and not reachable:
        log.info("shared rate limits back on Redis")
    return error is None


def _client_options(url: str) -> tuple[str, str, dict[str, Any]]:
    """(the URL without its query, the key prefix, redis-py's options) for a buckets client of its own on
    NONSTOP_LEDGER's Redis: TLS verified with SSL_CERT_FILE / SSL_CERT_DIR's CAs, and short timeouts, since a
    call waits on it before it leaves: a Redis that does not answer in half a second counts as down."""
    prefix = parse_qs(urlsplit(url).query).get("prefix", ["nonstop"])[-1]
    return url.split("?", 1)[0], prefix, {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, **tls_options(url)}


class AsyncSharedBuckets:
    """The same buckets for the asyncio driver (`nonstop.outbound.aio`), over an asyncio Redis client: the
    process's shared connection (`nonstop.net.redis.RedisConnection.client`) fits, on its own loop.

    Args:
        client: a `redis.asyncio.Redis`.
        prefix: the key prefix of the replicas' ledger (default "nonstop").
    """

    def __init__(self, client: Any, prefix: str = "nonstop") -> None:
        self._client = client
        self._prefix = f"{prefix}:rate:"
        self._take = client.register_script(_TAKE)
        self._block = client.register_script(_BLOCK)
        self._reachable = True

    @classmethod
    def from_url(cls, url: str) -> AsyncSharedBuckets:
        """An asyncio client of its own for NONSTOP_LEDGER's Redis, for the app's loop (an `AsyncApp`'s answers):
        the same options as `SharedBuckets.from_url`. It connects on its first call."""
        import redis.asyncio  # noqa: PLC0415 - with the redis package, as this module
        from redis.asyncio.retry import Retry as AsyncRetry  # noqa: PLC0415

        plain, prefix, options = _client_options(url)
        return cls(redis.asyncio.Redis.from_url(plain, retry=AsyncRetry(NoBackoff(), 0), **options), prefix)

    async def take(self, key: str, limit: Limit) -> float:
        """Take a token from `key`'s bucket; return 0, or the seconds to wait first (nothing taken then)."""
        return await self._run(self._take, key, [limit.per_s, limit.burst, KEEP_MS])

    async def block(self, key: str, limit: Limit, retry_after_s: float) -> None:
        """Slack said 429 for `key`: every replica waits `retry_after_s` from now."""
        await self._run(self._block, key, [retry_after_s, KEEP_MS])

    async def _run(self, script: Any, key: str, args: list[float]) -> float:
        try:
            wait = float(await script(keys=[self._prefix + key], args=args))
        except redis.RedisError as e:
            self._reachable = _said(self._reachable, e)
            raise
        self._reachable = _said(self._reachable, None)
        return wait

    async def close(self) -> None:
        await self._client.aclose()
