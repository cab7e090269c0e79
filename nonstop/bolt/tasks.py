"""When an `AsyncApp` is done with an envelope: its dispatch has returned and every task it started has ended.

Bolt's `AsyncApp` starts each listener, and each lazy listener, as a task of its own (`asyncio.ensure_future`)
and returns from its dispatch once the ack is decided [SDK: slack_bolt/listener/asyncio_runner.py]. The event
is finished only when those tasks have ended too, as `nonstop.bolt.lanes` knows it for an `App` on threads.
So the app's loop gets a task factory (`TaskCounting`) that counts, on the envelope's `Tracker`, every task
created while that envelope's work is under way: `counting(tracker)` marks it in a context variable, and a
task runs in a copy of its creator's context, so tasks that those tasks start are counted as well.

A task a listener starts and never ends (a background loop of the user's) keeps its event unfinished: it is
part of that event's work as far as anyone can tell.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from nonstop.bolt.lanes import Tracker

__all__ = ["TaskCounting", "counting"]

_CURRENT: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("nonstop_envelope", default=None)


@contextmanager
def counting(tracker: Tracker) -> Iterator[None]:
    """Tasks created inside the block (and by them, in turn) count on `tracker` until they end."""
    token = _CURRENT.set(tracker)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class TaskCounting:
    """The task factory of one loop, for as long as it is installed.

    Args:
        loop: the loop the app's dispatch and listeners run on. `install()` and `uninstall()` on its thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        """Count tasks from now on; a task factory the loop already has still makes every task."""
        if self._installed:
            return
        self._previous = self._loop.get_task_factory()
        self._loop.set_task_factory(self._create)  # type: ignore[arg-type]
        self._installed = True

    def uninstall(self) -> None:
        """Give the loop back the task factory it had (if none other was set in between)."""
        if self._installed and self._loop.get_task_factory() == self._create:
            self._loop.set_task_factory(self._previous)
        self._installed = False

    def _create(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        previous = self._previous
        task = previous(loop, coro, **kwargs) if previous is not None else asyncio.Task(coro, loop=loop, **kwargs)
        tracker = _CURRENT.get()  # the creator's context: create_task calls the factory synchronously
        if tracker is not None and tracker.add():
            task.add_done_callback(lambda _task: tracker.release())
        return task
