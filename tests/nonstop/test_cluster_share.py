"""Slack's 10 connections shared by replicas: the split, and reservations against a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from nonstop.cluster import ClusterShare, LocalShare, Member, allocate
from nonstop.ledger import RedisLedger
from nonstop.telemetry import Telemetry
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


def test_a_lone_process_may_open_its_wish_and_replacements_up_to_slacks_limit() -> None:
    share = LocalShare(2)

    async def scenario() -> list[bool]:
        wished = [await share.acquire(), await share.acquire(), await share.acquire()]
        return wished + [await share.acquire(True) for _ in range(9)]

    assert asyncio.run(scenario()) == [True, True, False] + [True] * 8 + [False]


def test_replicas_never_reserve_more_than_ten_links_together(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ledgers = [RedisLedger(redis_server.url, ttl_s=60, lease_s=2, replica=f"r{i}") for i in range(6)]
        shares = []
        for ledger in ledgers:
            await ledger.open()
            shares.append(ClusterShare(ledger, name=ledger.replica, wish=3, telemetry=Telemetry()))
        first = shares[0]
        await first.beat()
        assert first.allowed == 3, "alone, a replica gets its wish"
        assert [await first.acquire() for _ in range(4)] == [True, True, True, False]
        for share in shares[1:]:
            await share.beat()
        for share in shares:
            await share.beat()  # everyone sees everyone
        assert [b.allowed for b in shares] == [2, 2, 2, 2, 1, 1]
        # The first still holds 3 (it has not closed the one it gave up): the others get only 7.
        granted = await asyncio.gather(*(b.acquire() for b in shares[1:] for _ in range(3)))
        assert sum(granted) == 7
        assert sum(b.held for b in shares) == 10
        assert not await shares[5].acquire(extra=True), "no make-before-break past Slack's ten"
        first.release()  # it closed its third link
        await first.beat()
        assert [await b.acquire() for b in shares[1:]].count(True) == 1
        assert [b.held for b in shares] == [2, 2, 2, 2, 1, 1]
        for share in shares:
            await share.beat()
        assert [b.room(b.held) for b in shares] == [0] * 6, "no room left anywhere"
        assert shares[5].room(0) == 1, "a link of its own closed, it may open one again"
        for share, ledger in zip(shares, ledgers, strict=True):
            await share.leave()
            await ledger.close()

    asyncio.run(scenario())
