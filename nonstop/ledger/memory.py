"""`memory://`: the ledger in this process only. Duplicates are caught while it lives; nothing
survives a restart (a crash loses acked, unfinished events). For tests and throwaway runs."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from nonstop.ledger.base import Entry, Ledger, Recovered, checked_marks


class MemoryLedger(Ledger):
    url = "memory://"

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._pending: set[str] = set()
        self._done: OrderedDict[str, float] = OrderedDict()  # key → when it finished, oldest first
        self._marks: dict[str, tuple[str, int]] = {}  # conversation → (ts, its microseconds)

    async def open(self) -> Recovered:
        return Recovered(unfinished=[], given_up=[])

    async def admit(self, entries: list[Entry]) -> list[bool]:
        return self.admit_now(entries)

    def admit_now(self, entries: list[Entry]) -> list[bool]:
        fresh: list[bool] = []
        for entry in entries:
            known = self._known(entry.key) or (entry.alias is not None and self._known(entry.alias))
            if not known:
                self._pending.add(entry.key)
            fresh.append(not known)
        return fresh

    def _known(self, key: str) -> bool:
        return key in self._pending or key in self._done

    async def finish(self, keys: list[str]) -> None:
        now = self._clock()
        for key in keys:
            self._pending.discard(key)
            self._done[key] = now
            self._done.move_to_end(key)

    async def prune(self) -> int:
        cutoff = self._clock() - self._ttl_s
        gone = 0
        while self._done and next(iter(self._done.values())) < cutoff:
            self._done.popitem(last=False)
            gone += 1
        return gone

    async def marks(self) -> dict[str, str]:
        return {conversation: ts for conversation, (ts, _) in self._marks.items()}

    async def advance_marks(self, marks: dict[str, str]) -> None:
        for conversation, (ts, micros) in checked_marks(marks).items():
            if conversation not in self._marks or micros > self._marks[conversation][1]:
                self._marks[conversation] = (ts, micros)

    async def close(self) -> None:
        return None

    @property
    def durable(self) -> bool:
        return False
