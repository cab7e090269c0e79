"""Open the ledger and the coordinator from one URL (`NONSTOP_LEDGER`): the one place that knows the backends.

`memory://` and `sqlite:///PATH` make a ledger for this process alone and a `LocalCoordinator`;
`redis://` (`rediss://`) makes one Redis connection, shared by a `RedisLedger` and a `RedisCoordinator`
(replicas: membership, shares of Slack's connections, takeover). Redis needs the `redis` package, the
`nonstop[redis]` extra; without it, a `redis://` URL is a one-line configuration error.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nonstop.config.urls import parse_ledger_url
from nonstop.coordination.base import Coordinator, LocalCoordinator
from nonstop.errors import ConfigError
from nonstop.ledger.base import Ledger
from nonstop.ledger.memory import MemoryLedger
from nonstop.ledger.sqlite import SqliteLedger

__all__ = ["Backends", "default_replica_name", "open_backends", "open_local_ledger"]


@dataclass
class Backends:
    """A ledger and the coordinator beside it; `close()` after the coordinator has left."""

    ledger: Ledger
    coordinator: Coordinator
    connection: Any = None  # the shared Redis connection, if any: closed last

    async def close(self) -> None:
        await self.ledger.close()
        if self.connection is not None:
            await self.connection.close()


def default_replica_name() -> str:
    """The pod's name under Kubernetes (HOSTNAME), the host name elsewhere; with the pid, as several replicas
    may share a host."""
    host = os.environ.get("HOSTNAME") or socket.gethostname() or "replica"
    return f"{host}:{os.getpid()}"


def open_local_ledger(url: str, ttl_s: float) -> Ledger:
    """The ledger for a `memory://` or `sqlite:///` URL, not yet opened. Raises ValueError for any other."""
    scheme, path, options = parse_ledger_url(url)
    if scheme == "memory":
        return MemoryLedger(ttl_s)
    if scheme == "sqlite" and path is not None:
        return SqliteLedger(path, ttl_s, synchronous=options.get("synchronous", "normal"))
    raise ValueError(f"{scheme}:// is shared by replicas: open it with open_backends()")


async def open_backends(
    url: str,
    *,
    ttl_s: float,
    wish: int,
    lease_s: float,
    replica_name: str = "",
    handled: Callable[[], int] = lambda: 0,
) -> Backends:
    """Open what `url` names. Raises `ConfigError` for what a person must fix (a malformed URL, a Redis that
    refuses this client, a missing extra); `LedgerError` for a local ledger that cannot be used."""
    try:
        scheme, _, options = parse_ledger_url(url)
    except ValueError as e:
        raise ConfigError(f"NONSTOP_LEDGER is not a ledger URL: {e}.") from None
    if scheme not in ("redis", "rediss"):
        return Backends(open_local_ledger(url, ttl_s), LocalCoordinator(wish))
    try:
        from nonstop.coordination.cluster_share import ClusterShare  # noqa: PLC0415 - needs the optional redis package
        from nonstop.coordination.redis import RedisCoordinator  # noqa: PLC0415
        from nonstop.ledger.redis import RedisLedger  # noqa: PLC0415
        from nonstop.net.redis import RedisConnection  # noqa: PLC0415
    except ImportError:
        raise ConfigError(
            f"NONSTOP_LEDGER={scheme}://… needs the redis package: pip install 'nonstop[redis]'"
        ) from None
    connection = RedisConnection(url)
    await connection.open()
    member = default_replica_name()
    prefix = options.get("prefix", "nonstop")
    ledger = RedisLedger(connection, ttl_s, owner=member, prefix=prefix)
    share = ClusterShare(
        connection,
        prefix=f"{prefix}:",
        member=member,
        name=replica_name or member,
        wish=wish,
        lease_s=lease_s,
        handled=handled,
    )
    coordinator = RedisCoordinator(connection, ledger, share)
    return Backends(ledger, coordinator, connection)
