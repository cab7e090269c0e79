"""The Redis ledger beyond the common contract: leases between replicas, and a Redis that goes away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from nonstop.config.settings import load_settings
from nonstop.errors import ConfigError
from nonstop.ledger import Entry, RedisLedger
from nonstop.ledger.redis import redact_url
from tests.redisserver import RedisServer

LEASE_S = 0.4


def entry(n: int) -> Entry:
    return Entry(f"event:Ev{n:05d}", {"envelope_id": f"env-{n}", "type": "events_api", "payload": {"event_id": n}})


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def replica(server: RedisServer, name: str, ttl_s: float = 60) -> RedisLedger:
    return RedisLedger(server.url, ttl_s=ttl_s, lease_s=LEASE_S, replica=name)


def test_one_replica_admits_an_event_and_every_other_sees_the_duplicate(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        a, b = replica(redis_server, "a"), replica(redis_server, "b")
        await a.open()
        await b.open()
        results = await asyncio.gather(a.admit([entry(1), entry(2)]), b.admit([entry(2), entry(1), entry(3)]))
        firsts = [results[0][0] + results[1][1], results[0][1] + results[1][0]]
        assert firsts == [1, 1], f"each event admitted by exactly one replica: {results}"
        assert results[1][2] is True
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_renewed_claim_stays_and_a_dead_replicas_claim_moves(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        alive, dying, taker = replica(redis_server, "alive"), replica(redis_server, "dying"), replica(redis_server, "t")
        for ledger in (alive, dying, taker):
            await ledger.open()
        await alive.admit([entry(1)])
        await dying.admit([entry(2)])
        taken: list[str] = []

        async def moved() -> bool:
            await alive.renew([entry(1).key])  # alive renews; dying has stopped renewing (as if SIGKILLed)
            taken.extend(e.key for e in (await taker.takeover()).unfinished)
            return entry(2).key in taken

        await until(moved)
        for _ in range(5):  # several leases more: the renewed claim never moves
            await moved()
            await asyncio.sleep(LEASE_S / 2)
        assert taken == [entry(2).key]
        await taker.finish([entry(2).key])
        assert await alive.admit([entry(2)]) == [False]
        for ledger in (alive, dying, taker):
            await ledger.close()

    asyncio.run(scenario())


def test_done_events_expire_after_the_ttl(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ledger = replica(redis_server, "a", ttl_s=1)
        await ledger.open()
        await ledger.admit([entry(1)])
        await ledger.finish([entry(1).key])
        assert await ledger.admit([entry(1)]) == [False]
        await until(lambda: _known_in_redis(redis_server, entry(1).key, want=False))
        await ledger.close()

    asyncio.run(scenario())


async def _known_in_redis(server: RedisServer, key: str, want: bool) -> bool:
    reply = server.command("EXISTS", f"nonstop:done:{key}")
    return reply.startswith(b":1") == want


def test_without_redis_a_replica_answers_on_and_reconciles_when_it_returns(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ledger = replica(redis_server, "a")
        await ledger.open()
        assert await ledger.admit([entry(1), entry(2)]) == [True, True]
        redis_server.kill()
        await ledger.finish([entry(1).key])  # finished while Redis is gone
        assert ledger.degraded
        assert await ledger.admit([entry(3), entry(1), entry(2), entry(3)]) == [True, False, False, False]
        redis_server.start()  # back, and empty (no persistence)
        await ledger.renew([entry(2).key, entry(3).key])
        assert not ledger.degraded
        assert redis_server.command("EXISTS", f"nonstop:done:{entry(1).key}").startswith(b":1")
        owners = redis_server.command("HKEYS", "nonstop:owner").decode()
        assert entry(2).key in owners
        assert entry(3).key in owners, "an event admitted during the outage is claimed once Redis is back"
        other = replica(redis_server, "b")
        await other.open()
        assert await other.admit([entry(1), entry(2), entry(3)]) == [False, False, False]
        await other.close()
        await ledger.close()

    asyncio.run(scenario())


def test_a_replica_starts_without_redis_and_the_password_never_shows() -> None:
    url = "redis://:s3cret-pass@127.0.0.1:1/0"
    ledger = RedisLedger(url, ttl_s=60, lease_s=LEASE_S, replica="a")
    assert "s3cret" not in ledger.url

    async def scenario() -> None:
        await ledger.open()
        assert ledger.degraded
        assert await ledger.admit([entry(1), entry(1)]) == [True, False]
        await ledger.close()

    asyncio.run(scenario())


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
