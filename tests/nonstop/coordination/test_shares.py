"""Slack's 10 connections shared by replicas: the split, and reservations against a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from nonstop.coordination.allocation import Member, allocate
from nonstop.coordination.cluster_share import ClusterShare
from nonstop.coordination.share import LocalShare
from nonstop.net.redis import RedisConnection
from tests.redisserver import RedisServer


def members(*wishes: int) -> list[Member]:
    return [Member(f"m{i}", f"m{i}", wish, 0, float(i), 0) for i, wish in enumerate(wishes)]


@pytest.mark.parametrize(
    ("wishes", "split"),
    [
        ((2, 2, 2), [2, 2, 2]),
        ((2,) * 6, [2, 2, 2, 2, 1, 1]),  # the oldest keep their wish, every replica keeps one
        ((10, 10), [5, 5]),
        ((1,) * 12, [1] * 10 + [0, 0]),  # past ten: the youngest wait as standbys
        ((4, 1, 10), [4, 1, 5]),
    ],
)
def test_allocate_gives_one_each_by_age_then_the_rest_to_wishes(wishes: tuple[int, ...], split: list[int]) -> None:
    share = allocate(members(*wishes))
    assert [share[f"m{i}"] for i in range(len(wishes))] == split
    assert sum(share.values()) <= 10


def test_a_lone_process_may_open_up_to_slacks_limit() -> None:
    share = LocalShare(2)  # how many of them are slots, spares or replacements is the supervisor's to decide

    async def scenario() -> list[bool]:
        return [await share.acquire() for _ in range(11)]

    assert asyncio.run(scenario()) == [True] * 10 + [False]
    assert share.others_held() == 0


def test_replicas_never_reserve_more_than_ten_links_together(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        connections = [RedisConnection(redis_server.url) for _ in range(6)]
        shares = []
        for i, connection in enumerate(connections):
            await connection.open()
            shares.append(
                ClusterShare(
                    connection, prefix="nonstop:", member=f"r{i}", name=f"r{i}", wish=3, lease_s=2, handled=lambda: 0
                )
            )
        first = shares[0]
        await first.beat()
        assert first.allowed == 3, "alone, a replica gets its wish"
        assert [await first.acquire() for _ in range(3)] == [True, True, True]
        for share in shares[1:]:
            await share.beat()
        for share in shares:
            await share.beat()  # everyone sees everyone
        assert [b.allowed for b in shares] == [2, 2, 2, 2, 1, 1]
        # Each asks for its share; the first still holds 3 (it has not closed the one it gave up yet).
        granted = await asyncio.gather(*(b.acquire() for b in shares[1:] for _ in range(b.allowed)))
        assert sum(granted) == 7
        assert sum(b.held for b in shares) == 10
        waiting = next(b for b in shares[1:] if b.held < b.allowed)
        assert not await waiting.acquire(), "the eleventh must wait"
        first.release()  # it closed the link it gave up
        await first.beat()
        assert await waiting.acquire()
        assert [b.held for b in shares] == [2, 2, 2, 2, 1, 1]
        for share in shares:
            await share.beat()
        assert [b.others_held() for b in shares] == [10 - b.held for b in shares]
        for share, connection in zip(shares, connections, strict=True):
            await share.leave()
            await connection.close()

    asyncio.run(scenario())
