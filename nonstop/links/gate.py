"""One door for every connection attempt of the process, so N wanted links never multiply the rate.

Each attempt (ticket, handshake, hello) takes the gate in turn. After a failure the gate stays shut
for the wait the retry policy chose (or exactly what Slack's `Retry-After` said), for every slot at
once: during an outage the process asks `apps.connections.open` about once per wait, not once per
wait per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable


class ConnectGate:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._not_before = 0.0

    def hold_off(self, seconds: float) -> None:
        """Admit no attempt for `seconds` from now (a longer hold already in force stays)."""
        self._not_before = max(self._not_before, time.monotonic() + seconds)

    @property
    def opens_in_s(self) -> float:
        return max(0.0, self._not_before - time.monotonic())

    @contextlib.asynccontextmanager
    async def turn(self, sleep: Callable[[float], Awaitable[None]], stopped: Callable[[], bool]) -> AsyncIterator[None]:
        """Wait for this caller's turn: the previous attempt over and any hold-off past. `sleep` is
        the caller's interruptible sleep; once `stopped()` the turn comes at once (the caller checks)."""
        async with self._lock:
            while (wait := self.opens_in_s) > 0 and not stopped():
                await sleep(wait)
            yield
