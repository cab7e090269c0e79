"""`memory://`: the ledger in this process only. Duplicates are caught while it lives; nothing
survives a restart (a crash loses acked, unfinished events). For tests and throwaway runs."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from nonstop.ledger.base import Entry, Ledger, Recovered


class MemoryLedger(Ledger):
    url = "memory://"

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._pending: set[str] = set()
        self._done: OrderedDict[str, float] = OrderedDict()  # key → when it finished, oldest first

    async def open(self) -> Recovered:
        return Recovered(unfinished=[], given_up=[])

    async def admit(self, entries: list[Entry]) -> list[bool]:
        return self.admit_now(entries)

    def admit_now(self, entries: list[Entry]) -> list[bool]:
        fresh: list[bool] = []
        for entry in entries:
            known = entry.key in self._pending or entry.key in self._done
            if not known:
                self._pending.add(entry.key)
            fresh.append(not known)
        return fresh

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

    async def close(self) -> None:
        return None

    @property
    def durable(self) -> bool:
        return False
