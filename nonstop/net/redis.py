"""`RedisConnection`: the one Redis connection of a process, shared by its ledger and its coordinator, and
whether Redis is usable right now.

Redis is never a single point of failure for answering: when a call fails, or takes longer than `slow_s`,
Redis is *degraded* for everyone that shares the connection (the ledger then records and deduplicates in
this process, the coordinator keeps the share it last agreed). It is usable again only after `recover_after`
probes in a row that were each answered within `slow_s`, so a Redis that is slow rather than down does not
flip the process between the two modes with every call. The coordinator's heartbeat is the probe.

Requires the `redis` package (`pip install 'nonstop[redis]'`).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError, RedisError, ResponseError

from nonstop.errors import ConfigError
from nonstop.redact import redact_url

__all__ = ["SLOW_S", "RedisConnection", "RedisError", "tls_options"]

log = logging.getLogger("nonstop.redis")

SLOW_S = 0.5
"""An answer slower than this counts as a failure: Redis answers in well under a millisecond, and an ack
waiting on the ledger must still leave well within Slack's 3 s."""

RECOVER_AFTER = 3
"""Probes answered in time, in a row, before a degraded Redis is used again."""

TIMEOUT_S = 1.0
"""Socket timeouts: a call that takes this long has failed."""


class RedisConnection:
    """Args:
    url: `redis://` or `rediss://` (TLS, always verified; extra CAs from SSL_CERT_FILE / SSL_CERT_DIR).
    slow_s: an answer slower than this degrades Redis like a failure.
    recover_after: probes answered in time, in a row, before Redis is used again.
    """

    def __init__(
        self,
        url: str,
        *,
        slow_s: float = SLOW_S,
        recover_after: int = RECOVER_AFTER,
        clock: Callable[[], float] = time.monotonic,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.url = redact_url(url)
        self._raw_url = url
        self._slow_s = slow_s
        self._recover_after = recover_after
        self._clock = clock
        self._client = client
        self._degraded_since: float | None = None
        self._good_probes = 0
        self._on_change: list[Callable[[bool], None]] = []

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise ConfigError(f"the Redis connection to {self.url} is not open")
        return self._client

    async def open(self) -> None:
        """Connect and check that Redis takes this client. Raises `ConfigError` for what a person must fix
        (a password, a certificate); an unreachable Redis only starts the process degraded."""
        if self._client is None:
            try:
                self._client = aioredis.Redis.from_url(
                    self._raw_url,
                    **tls_options(self._raw_url),
                    socket_timeout=TIMEOUT_S,
                    socket_connect_timeout=TIMEOUT_S,
                    retry=Retry(NoBackoff(), 0),  # no hidden retries: on failure, degrade at once
                    health_check_interval=0,
                )
            except (ValueError, RedisError) as e:
                raise ConfigError(f"cannot use {self.url}: {e}") from None
        try:
            await self._client.ping()
        except (AuthenticationError, AuthorizationError, NoPermissionError) as e:
            raise ConfigError(
                f"Redis at {self.url} refused this client ({type(e).__name__}: {e}): check the password (and user) "
                "in NONSTOP_LEDGER"
            ) from None
        except ResponseError as e:
            if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
                raise ConfigError(f"Redis at {self.url} needs a password: redis://:PASSWORD@HOST:PORT/DB") from None
            self.failed(e)
        except RedisError as e:
            if _certificate_refused(e):
                raise ConfigError(
                    f"the TLS certificate of Redis at {self.url} does not verify ({e}): trust its CA with "
                    "SSL_CERT_FILE or SSL_CERT_DIR, or fix the host name in NONSTOP_LEDGER"
                ) from None
            self.failed(e)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- reachability ------------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """Redis is not to be used now: its users work on their own until it is back."""
        return self._degraded_since is not None

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """`callback(usable)` whenever Redis is given up on or usable again."""
        self._on_change.append(callback)

    def failed(self, error: BaseException | str) -> None:
        """A call failed: Redis is degraded (said once, until it is back)."""
        self._good_probes = 0
        if self._degraded_since is not None:
            return
        self._degraded_since = self._clock()
        why = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        log.warning(
            "Redis unusable (%s): answering on, deduplicating and recording events in this replica until it is back",
            why,
        )
        for callback in self._on_change:
            callback(False)

    def answered(self, started: float) -> bool:
        """A call started at `started` (this connection's clock) was answered: a slow answer degrades Redis
        like a failure. Returns whether Redis is (still) usable."""
        took = self._clock() - started
        if took > self._slow_s:
            self.failed(f"it took {took:.2f} s to answer (more than {self._slow_s:g} s)")
            return False
        return not self.degraded

    def probed(self, started: float) -> bool:
        """A probe started at `started` was answered. Once `recover_after` probes in a row were answered in
        time, Redis is usable again. Returns whether it is usable."""
        took = self._clock() - started
        if self._degraded_since is None:
            return self.answered(started)
        if took > self._slow_s:
            self._good_probes = 0
            return False
        self._good_probes += 1
        if self._good_probes < self._recover_after:
            return False
        log.warning("Redis usable again after %.1f s", self._clock() - self._degraded_since)
        self._degraded_since = None
        self._good_probes = 0
        for callback in self._on_change:
            callback(True)
        return True

    def now(self) -> float:
        """This connection's clock, for `answered` and `probed`."""
        return self._clock()


def tls_options(url: str) -> dict[str, Any]:
    """redis-py's TLS options for `url` (none for `redis://`): shared by every client of NONSTOP_LEDGER's Redis."""
    if urlsplit(url).scheme != "rediss":
        return {}
    # Verified always; extra CAs from the same variables as the Web API's and the WebSockets' TLS.
    return {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": os.environ.get("SSL_CERT_FILE", "").strip() or None,
        "ssl_ca_path": os.environ.get("SSL_CERT_DIR", "").strip() or None,
    }


def _certificate_refused(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
