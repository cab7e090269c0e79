from __future__ import annotations

import random

import pytest

from nonstop.policy import FATAL_ERRORS, Backoff, fatal_message, is_fatal


def test_full_jitter_stays_under_an_exponential_ceiling_capped() -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0, rng=random.Random(7))
    ceilings = [0.5, 1, 2, 4, 8, 10, 10, 10]
    for ceiling in ceilings:
        delay = backoff.failure()
        assert 0 <= delay <= ceiling
    draws = [Backoff(0.5, 10.0, random.Random(seed)).failure() for seed in range(200)]
    assert max(draws) > 0.4
    assert min(draws) < 0.1, "full jitter draws from [0, ceiling], not [ceiling/2, ceiling]"


def test_rate_limit_waits_exactly_retry_after() -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0)
    assert backoff.rate_limited(30.0) == 30.0
    assert backoff.in_trouble


def test_healthy_drop_resets_and_reconnects_now() -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0, rng=random.Random(1))
    for _ in range(5):
        backoff.failure()
    assert backoff.dropped(healthy=True) == 0.0
    assert not backoff.in_trouble


def test_links_that_keep_dying_young_fall_back_to_backoff() -> None:
    backoff = Backoff(base_s=1.0, cap_s=10.0, rng=random.Random(3), free_young_drops=3)
    assert [backoff.dropped(healthy=False) for _ in range(3)] == [0.0, 0.0, 0.0]
    later = [backoff.dropped(healthy=False) for _ in range(20)]
    assert sum(later) > 20, "after the free drops, young deaths must wait"


@pytest.mark.parametrize("code", sorted(FATAL_ERRORS))
def test_fatal_messages_say_what_to_do_without_any_token(code: str) -> None:
    assert is_fatal(code)
    text = fatal_message(code, "app")
    assert code in text
    assert "restart" in text
    assert "xapp-" not in text or "must start with xapp-" in text


@pytest.mark.parametrize("code", ["ratelimited", "internal_error", "http_503", "network", "too_many_websockets"])
def test_transient_errors_are_not_fatal(code: str) -> None:
    assert not is_fatal(code)
