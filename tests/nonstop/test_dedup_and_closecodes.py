from __future__ import annotations

from nonstop.links.ends import describe_close
from nonstop.pipeline.dedup import TTLCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache: TTLCache[int] = TTLCache(ttl_s=10, clock=clock)
    cache.put("Ev1", 1)
    clock.now = 9.9
    assert "Ev1" in cache
    clock.now = 10.1
    assert "Ev1" not in cache


def test_cache_is_bounded() -> None:
    cache: TTLCache[None] = TTLCache(ttl_s=1000, max_entries=100, clock=FakeClock())
    for i in range(1000):
        cache.put(f"Ev{i}", None)
    assert len(cache) == 100
    assert "Ev999" in cache
    assert "Ev0" not in cache


def test_close_codes_are_explained_in_words() -> None:
    assert describe_close(1006).startswith("1006 abnormal closure: no close frame")
    assert describe_close(1001, "bye") == "1001 going away: the server is shutting down or restarting; reason: 'bye'"
    assert "application-specific" in describe_close(4001)
    assert "unknown" in describe_close(2999)
