"""`LocalShare`: the share of Slack's connections of a process that runs alone (and the room-waiting both
kinds of share have in common)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nonstop.coordination.allocation import SLACK_CONNECTION_LIMIT

__all__ = ["LocalShare", "Room"]


class Room:
    """Wakes whoever waits for a connection of the budget when one may have come free here."""

    def __init__(self) -> None:
        self._freed = asyncio.Event()
        self._watchers: list[Callable[[], None]] = []

    def freed(self) -> None:
        self._freed.set()

    def asking(self) -> None:
        self._freed.clear()  # a release from now on (even while asking Redis) ends the next wait at once

    async def wait_for_room(self, timeout_s: float) -> None:
        """After a refused `acquire`: until a link here is released, or `timeout_s` (room made by other
        replicas shows only through Redis)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._freed.wait(), timeout_s)

    def watch(self, callback: Callable[[], None]) -> None:
        """`callback()` whenever what the other processes hold or are owed may have changed."""
        self._watchers.append(callback)

    def others_moved(self) -> None:
        for callback in self._watchers:
            callback()


class LocalShare(Room):
    """One process alone: it may hold what it wishes for, within Slack's limit."""

    def __init__(self, wish: int) -> None:
        super().__init__()
        self.wish = wish
        self.held = 0
        self.changed = asyncio.Event()  # never set: the allowance of a lone process does not change

    @property
    def allowed(self) -> int:
        return self.wish

    @property
    def recheck_s(self) -> float:
        return 0.1

    def others_held(self) -> int:
        return 0

    def others_short(self) -> int:
        """Links other replicas are owed and do not hold yet: none, alone."""
        return 0

    async def acquire(self) -> bool:
        """One more link? Alone, the pool's own budget check (`nonstop.links.budget`) decides: yes, within 10."""
        self.asking()
        if self.held >= SLACK_CONNECTION_LIMIT:
            return False
        self.held += 1
        return True

    def release(self) -> None:
        self.held = max(0, self.held - 1)
        self.freed()

    def hello(self, num_connections: object, open_here: int) -> None:
        return None
