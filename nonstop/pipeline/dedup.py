"""Remember what has been handled, for a while, so a re-sent envelope runs its handlers only once."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Insertion-ordered map whose entries expire after `ttl_s` and which never holds more than `max_entries`.

    Not thread-safe: the supervisor uses it from its event-loop thread only.
    """

    def __init__(self, ttl_s: float, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def _expire(self) -> None:
        deadline = self._clock() - self._ttl_s
        while self._items:
            key, (stored_at, _) = next(iter(self._items.items()))
            if stored_at > deadline and len(self._items) <= self._max:
                break
            del self._items[key]

    def get(self, key: str) -> V | None:
        self._expire()
        item = self._items.get(key)
        return None if item is None else item[1]

    def put(self, key: str, value: V) -> None:
        self._items[key] = (self._clock(), value)
        self._items.move_to_end(key)
        self._expire()

    def __contains__(self, key: object) -> bool:
        self._expire()
        return key in self._items

    def __len__(self) -> int:
        self._expire()
        return len(self._items)
