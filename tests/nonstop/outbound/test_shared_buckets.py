"""Rate-limit buckets shared by replicas, on a real throwaway Redis: one budget, one Retry-After for all."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from nonstop.outbound.limits import Limit
from nonstop.outbound.shared import AsyncSharedBuckets, SharedBuckets
from tests.redisserver import RedisServer

POSTS = Limit(per_s=1.0, burst=4.0)


@pytest.fixture
def replicas(redis_server: RedisServer) -> list[SharedBuckets]:
    buckets = [SharedBuckets.from_url(redis_server.url + "?prefix=test") for _ in range(3)]
    yield buckets
    for b in buckets:
        b.close()


def test_three_replicas_draw_from_one_budget(replicas: list[SharedBuckets]) -> None:
    waits = [replicas[i % 3].take("chat.postMessage:C1", POSTS) for i in range(6)]
    assert waits[:4] == [0.0, 0.0, 0.0, 0.0], "the burst, whichever replica asks"
    assert 0.5 < waits[4] <= 1.0, "the fifth waits for the next token, not for another replica's budget"
    assert waits[5] == pytest.approx(waits[4], abs=0.05), "nothing was taken by the answer to wait"


def test_other_buckets_are_not_touched(replicas: list[SharedBuckets]) -> None:
    for _ in range(4):
        replicas[0].take("chat.postMessage:C1", POSTS)
    assert replicas[1].take("chat.postMessage:C2", POSTS) == 0.0


def test_a_429_seen_by_one_replica_closes_the_bucket_for_all(replicas: list[SharedBuckets]) -> None:
    replicas[0].block("chat.postMessage:C1", POSTS, 3.0)
    waits = [r.take("chat.postMessage:C1", POSTS) for r in replicas]
    assert all(2.5 < w <= 3.0 for w in waits), waits


def test_an_unreachable_redis_raises_so_the_caller_goes_on_alone(redis_server: RedisServer) -> None:
    buckets = SharedBuckets.from_url(redis_server.url)
    redis_server.kill()
    try:
        with pytest.raises(redis.RedisError):  # the driver catches it and goes on with its own buckets
            buckets.take("chat.postMessage:C1", POSTS)
    finally:
        buckets.close()


def test_the_async_buckets_share_the_same_budget_as_the_sync_ones(redis_server: RedisServer) -> None:
    sync = SharedBuckets.from_url(redis_server.url)

    async def main() -> list[float]:
        client = aioredis.Redis.from_url(redis_server.url)
        buckets = AsyncSharedBuckets(client)
        waits = [await buckets.take("chat.postMessage:C9", POSTS) for _ in range(3)]
        waits.append(sync.take("chat.postMessage:C9", POSTS))  # another replica, the sync driver
        waits.append(await buckets.take("chat.postMessage:C9", POSTS))
        await buckets.block("chat.postMessage:C8", POSTS, 2.0)
        waits.append(sync.take("chat.postMessage:C8", POSTS))
        await client.aclose()
        return waits

    try:
        waits = asyncio.run(main())
    finally:
        sync.close()
    assert waits[:4] == [0.0, 0.0, 0.0, 0.0]
    assert 0.5 < waits[4] <= 1.0, "one budget, whichever driver draws from it"
    assert 1.5 < waits[5] <= 2.0, "a 429 seen by the async driver closes the bucket for the sync one"
