"""Small asyncio helpers shared by the links and the pipeline: work gathered in one loop turn, and tasks kept.

`PerTurn`: the frames a link writes in one turn leave in one write. `TaskSet`: the loop keeps only weak
references to tasks, so whoever starts one in the background keeps it here until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["PerTurn", "TaskSet", "in_daemon_thread", "raise_if_cancelled"]

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


class TaskSet:
    """Background tasks, kept alive until they end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self) -> None:
        """Until every task started so far has ended (their errors are theirs to log)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def __len__(self) -> int:
        return len(self._tasks)


def raise_if_cancelled() -> None:
    """Raise `CancelledError` if the current task was asked to stop. For a loop that catches a library's
    errors: a client that turns a cancellation into its own timeout error (redis-py can, when its socket
    timeout and the cancellation meet) must not keep a cancelled task running forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def in_daemon_thread(call: Callable[[], T], name: str) -> T:
    """`call()` on a daemon thread of its own, awaited. Unlike `asyncio.to_thread`, a call still blocked when the
    process stops (a Web API call during an outage waits up to its timeout) holds up neither `asyncio.run`'s
    executor shutdown nor the interpreter's exit: cancelling the await abandons it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = call(), None
        except BaseException as e:  # handed to the awaiting task, whatever it is
            result, error = None, e
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody awaits it any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future
