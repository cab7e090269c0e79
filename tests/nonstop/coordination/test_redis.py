"""Replicas on one Redis: who runs a dead replica's events, what a heartbeat costs, and a Redis that is down,
back, or only slow. Real `redis-server` processes on free loopback ports; a proxy makes one slow."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from nonstop.coordination.cluster_share import ClusterShare
from nonstop.coordination.redis import RedisCoordinator
from nonstop.ledger import Entry, Recovered
from nonstop.ledger.redis import RedisLedger
from nonstop.net.redis import RedisConnection
from tests.redisserver import RedisServer
from tests.slowproxy import slow_proxy

LEASE_S = 0.6


def entry(n: int, size: int = 0) -> Entry:
    payload = {"event_id": n, "text": "x" * size}
    return Entry(f"event:Ev{n:05d}", {"envelope_id": f"env-{n}", "type": "events_api", "payload": payload})


@dataclass
class Replica:
    connection: RedisConnection
    ledger: RedisLedger
    coordinator: RedisCoordinator
    taken: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def beat_forever(self) -> None:
        def takeover(recovered: Recovered, _source: str) -> None:
            self.taken += [e.key for e in recovered.unfinished]

        self.task = asyncio.create_task(self.coordinator.run(takeover))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.connection.close()


async def replica(url: str, name: str, *, lease_s: float = LEASE_S) -> Replica:
    connection = RedisConnection(url)
    await connection.open()
    ledger = RedisLedger(connection, ttl_s=60, owner=name)
    share = ClusterShare(
        connection, prefix="nonstop:", member=name, name=name, wish=2, lease_s=lease_s, handled=lambda: 0
    )
    coordinator = RedisCoordinator(connection, ledger, share)
    await coordinator.start()
    return Replica(connection, ledger, coordinator)


async def until(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 15) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if await result if isinstance(result, Awaitable) else result:
                return
            await asyncio.sleep(0.05)


def test_a_dead_replicas_events_move_to_exactly_one_replica_and_a_live_ones_never(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        alive, dying, other = [await replica(redis_server.url, n) for n in ("alive", "dying", "other")]
        assert await alive.ledger.admit([entry(1)]) == [True]
        assert await dying.ledger.admit([entry(2), entry(3)]) == [True, True]
        alive.beat_forever()
        other.beat_forever()  # `dying` never beats again, as after a SIGKILL
        await until(lambda: len(alive.taken) + len(other.taken) == 2)
        for _ in range(int(3 * LEASE_S / 0.05)):  # three leases more: nothing else moves
            await asyncio.sleep(0.05)
        assert sorted(alive.taken + other.taken) == [entry(2).key, entry(3).key], "each moved once, to one replica"
        assert entry(1).key not in alive.taken + other.taken, "a live replica's event never moves"
        for r in (alive, dying, other):
            await r.stop()

    asyncio.run(scenario())


def test_a_replica_that_leaves_is_known_dead_at_once(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        leaving, staying = [await replica(redis_server.url, n) for n in ("leaving", "staying")]
        await leaving.ledger.admit([entry(1)])
        await leaving.coordinator.leave()  # a graceful stop with an event left on record
        assert b"leaving" in redis_server.command("SMEMBERS", "nonstop:dead"), "no lease to wait for"
        staying.beat_forever()
        await until(lambda: staying.taken == [entry(1).key])
        await leaving.stop()
        await staying.stop()

    asyncio.run(scenario())


def _bytes_in(server: RedisServer) -> int:
    stats = server.command("INFO", "stats").decode()
    return int(next(line.split(":")[1] for line in stats.splitlines() if line.startswith("total_net_input_bytes")))


def test_a_heartbeat_costs_the_same_whatever_the_backlog(redis_server: RedisServer) -> None:
    """One heartbeat per replica, not a renewal per running event: with 1,000 events of 1 KB running, Redis
    receives as little per beat as with none."""

    async def scenario() -> None:
        busy = await replica(redis_server.url, "busy")
        await busy.ledger.admit([entry(n, size=1000) for n in range(1000)])
        before, beats = _bytes_in(redis_server), 10
        for _ in range(beats):
            await busy.coordinator.share.beat()
        per_beat = (_bytes_in(redis_server) - before) / beats
        assert per_beat < 5_000, f"{per_beat:.0f} bytes per heartbeat with 1,000 events running"
        await busy.stop()

    asyncio.run(scenario())


def test_without_redis_a_replica_answers_on_and_hands_redis_what_it_missed(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        a = await replica(redis_server.url, "a")
        assert await a.ledger.admit([entry(1), entry(2)]) == [True, True]
        redis_server.kill()
        await a.ledger.finish([entry(1).key])  # finished while Redis is gone
        assert a.connection.degraded
        assert await a.ledger.admit([entry(3), entry(1), entry(2), entry(3)]) == [True, False, False, False]
        redis_server.start()  # back, and empty (no persistence)
        a.beat_forever()  # the heartbeat is the probe
        await until(lambda: not a.connection.degraded)
        assert await a.ledger.admit([entry(1), entry(3)]) == [False, False], "known here, whatever Redis has yet"
        await until(lambda: redis_server.command("EXISTS", f"nonstop:done:{entry(1).key}").startswith(b":1"))
        owners = redis_server.command("HKEYS", "nonstop:owner").decode()
        assert entry(2).key in owners
        assert entry(3).key in owners, "an event admitted during the outage is recorded once Redis is back"
        b = await replica(redis_server.url, "b")
        assert await b.ledger.admit([entry(1), entry(2), entry(3)]) == [False, False, False]
        await a.stop()
        await b.stop()

    asyncio.run(scenario())


def test_what_redis_missed_is_handed_over_in_pieces(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nonstop.ledger.redis.RESYNC_PIECE", 50)

    def evalsha_calls() -> int:
        stats = redis_server.command("INFO", "commandstats").decode()
        line = next((x for x in stats.splitlines() if x.startswith("cmdstat_evalsha:")), "calls=0,")
        return int(line.split("calls=")[1].split(",")[0])

    async def scenario() -> None:
        a = await replica(redis_server.url, "a")
        events = [entry(n) for n in range(120)]
        await a.ledger.admit([*events, entry(999)])
        await a.ledger.finish([entry(999).key])  # Redis knows the script from now on: one call per piece
        a.connection.failed("a test cut it off")
        await a.ledger.finish([e.key for e in events])  # 120 finished while Redis was unusable
        before = evalsha_calls()
        await a.ledger.resync()
        assert evalsha_calls() - before == 3, "120 keys in pieces of 50: three calls (nothing left running)"
        done = [redis_server.command("EXISTS", f"nonstop:done:{e.key}").startswith(b":1") for e in events]
        assert all(done)
        await a.stop()

    asyncio.run(scenario())


def test_a_replica_starts_without_redis_and_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        with caplog.at_level(logging.INFO):
            a = await replica("redis://:s3cret-pass@127.0.0.1:1/0", "a")
        assert a.connection.degraded
        assert "s3cret" not in a.connection.url
        assert await a.ledger.admit([entry(1), entry(1)]) == [True, False]
        assert a.coordinator.share.allowed == 1, "alone without Redis: one link, so that it answers meanwhile"
        await a.stop()

    asyncio.run(scenario())
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize("delay_s", [0.7, 1.5])  # slower than SLOW_S; slower than the socket timeout
def test_a_slow_redis_is_given_up_once_not_flipped_with_every_call(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, delay_s: float
) -> None:
    async def scenario() -> None:
        with slow_proxy(redis_server.port) as proxy:
            a = await replica(proxy.url, "a")
            a.beat_forever()
            proxy.delay_s = delay_s
            await until(lambda: a.connection.degraded)
            started = time.monotonic()
            for n in range(20):  # admissions meanwhile: local, so acks never wait on the slow Redis
                assert await a.ledger.admit([entry(n)]) == [True]
            assert time.monotonic() - started < 0.5
            for _ in range(int(6 * LEASE_S / 0.05)):  # eighteen heartbeats: each one slow
                await asyncio.sleep(0.05)
            assert a.connection.degraded
            proxy.delay_s = 0
            await until(lambda: not a.connection.degraded)
            await until(lambda: redis_server.command("HLEN", "nonstop:owner").startswith(b":20"))
            await a.stop()

    with caplog.at_level(logging.WARNING, logger="nonstop.redis"):
        asyncio.run(scenario())
    given_up = [r for r in caplog.records if "Redis unusable" in r.getMessage()]
    back = [r for r in caplog.records if "usable again" in r.getMessage()]
    assert (len(given_up), len(back)) == (1, 1), [r.getMessage() for r in caplog.records]


def test_one_replica_leads_a_work_at_a_time_and_a_dead_leaders_lease_lapses(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        first, second = [await replica(redis_server.url, n) for n in ("first", "second")]
        try:
            assert await first.coordinator.lead("catch-up", 0.5)
            assert not await second.coordinator.lead("catch-up", 0.5), "held by the first"
            assert await first.coordinator.lead("catch-up", 0.5), "the holder renews"
            assert await second.coordinator.lead("other work", 0.5), "another work is another lease"
            await until(lambda: second.coordinator.lead("catch-up", 0.5), timeout_s=3)  # the first stopped renewing
            assert not await first.coordinator.lead("catch-up", 0.5)
            await first.coordinator.step_down("catch-up")  # not the holder: changes nothing
            assert not await first.coordinator.lead("catch-up", 0.5)
            await second.coordinator.step_down("catch-up")
            assert await first.coordinator.lead("catch-up", 0.5), "free at once after a step-down"
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
