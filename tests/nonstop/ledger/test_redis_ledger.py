"""The Redis ledger beyond the common contract: replicas admitting the same events, done events expiring on
Redis's clock, and URLs that never show their password. Replicas, heartbeats and outages: see
tests/nonstop/coordination/test_redis.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from nonstop.config.settings import load_settings
from nonstop.errors import ConfigError
from nonstop.ledger import Entry
from nonstop.ledger.redis import RedisLedger
from nonstop.net.redis import RedisConnection
from nonstop.redact import redact_url
from tests.redisserver import RedisServer


def entry(n: int) -> Entry:
    return Entry(f"event:Ev{n:05d}", {"envelope_id": f"env-{n}", "type": "events_api", "payload": {"event_id": n}})


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def replica(server: RedisServer, name: str, ttl_s: float = 60) -> RedisLedger:
    connection = RedisConnection(server.url)
    await connection.open()
    return RedisLedger(connection, ttl_s=ttl_s, owner=name)


def test_one_replica_admits_an_event_and_every_other_sees_the_duplicate(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        a, b = await replica(redis_server, "a"), await replica(redis_server, "b")
        results = await asyncio.gather(a.admit([entry(1), entry(2)]), b.admit([entry(2), entry(1), entry(3)]))
        firsts = [results[0][0] + results[1][1], results[0][1] + results[1][0]]
        assert firsts == [1, 1], f"each event admitted by exactly one replica: {results}"
        assert results[1][2] is True

    asyncio.run(scenario())


def test_done_events_expire_after_the_ttl(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ledger = await replica(redis_server, "a", ttl_s=1)
        await ledger.admit([entry(1)])
        await ledger.finish([entry(1).key])
        assert await ledger.admit([entry(1)]) == [False]
        await until(lambda: _known_in_redis(redis_server, entry(1).key, want=False))

    asyncio.run(scenario())


async def _known_in_redis(server: RedisServer, key: str, want: bool) -> bool:
    reply = server.command("EXISTS", f"nonstop:done:{key}")
    return reply.startswith(b":1") == want


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://…@h:6379/0"),
        ("rediss://user:pw@h/1", "rediss://user:…@h/1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://:p@ss@h:port/0", "redis://…@h:port/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_bad_redis_url_is_one_line_without_its_password() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_APP_TOKEN": "xapp-1-A1-2-abc"}
    with pytest.raises(ConfigError) as caught:
        load_settings(env | {"NONSTOP_LEDGER": "redis://:hunter2@redis.internal:port/0"})
    message = str(caught.value)
    assert "hunter2" not in message
    assert message.startswith("NONSTOP_LEDGER='redis://…@redis.internal:port/0' is not a ledger URL: the port")
    assert "\n" not in message
    settings = load_settings(env | {"NONSTOP_LEDGER": "rediss://:hunter2@redis.internal:6380/1", "NONSTOP_LEASE": "4"})
    assert (settings.supervisor.ledger_url, settings.supervisor.lease_s) == (
        "rediss://:hunter2@redis.internal:6380/1",
        4,
    )
