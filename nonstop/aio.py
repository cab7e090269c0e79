"""Work gathered during one turn of the event loop and handled together at its end.

Acks for every frame read in a turn leave in one go; the events of a turn are admitted to the ledger
in one write; the events that finished in a turn are marked done in one write. One pattern, here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerTurn(Generic[T]):
    """`add()` items during a loop turn; `flush(items)` runs once, at the end of that turn, with all of them.

    Not thread-safe: use it from the event loop's thread only."""

    def __init__(self, flush: Callable[[list[T]], None]) -> None:
        self._flush = flush
        self._items: list[T] = []

    def add(self, item: T) -> None:
        if not self._items:
            asyncio.get_running_loop().call_soon(self.flush_now)
        self._items.append(item)

    def flush_now(self) -> None:
        """Hand over what has been gathered so far (also called by the loop at the end of the turn)."""
        items, self._items = self._items, []
        if items:
            self._flush(items)

    def __len__(self) -> int:
        return len(self._items)
