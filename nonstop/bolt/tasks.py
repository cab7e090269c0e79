"""When an `AsyncApp` is done with an envelope: its dispatch has returned and every task it started has ended.

Bolt's `AsyncApp` starts each listener, and each lazy listener, as a task of its own (`asyncio.ensure_future`)
and returns from its dispatch once the ack is decided [SDK: slack_bolt/listener/asyncio_runner.py]. The event
is finished only when those tasks have ended too, as `nonstop.bolt.lanes` knows it for an `App` on threads.
So the app's loop gets a task factory (`TaskCounting`) that counts, on the envelope's `Tracker`, every task
created while that envelope's work is under way: `counting(tracker)` marks it in a context variable, and a
task runs in a copy of its creator's context, so tasks that those tasks start are counted as well.

A task a listener starts and never ends (a background loop of the user's) keeps its event unfinished: it is
part of that event's work as far as anyone can tell. A task created with a `context=` of its own is counted on
the envelope of that context (none, for a fresh `contextvars.Context()`: the answer path's scheduler).

`Place` is an envelope's place in its lane (`nonstop.bolt.aio_runner`): a listener whose answer must wait in
the answer path's governor gives it up (`step_aside`), as a listener thread of an `App` is free once its call
returns a pending response, so that a channel that owes 40 answers holds up no other channel's events.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from nonstop.bolt.lanes import Tracker

__all__ = ["Place", "TaskCounting", "counting", "current_tracker", "step_aside"]

_CURRENT: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("nonstop_envelope", default=None)


class Place:
    """One envelope's place in its lane (a slot of its semaphore), given back once: when its work has ended, or
    earlier, when what is left of it only waits on Slack."""

    def __init__(self, lane: asyncio.Semaphore) -> None:
        self._lane = lane
        self._held = True

    @property
    def held(self) -> bool:
        return self._held

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._lane.release()


_PLACE: contextvars.ContextVar[Place | None] = contextvars.ContextVar("nonstop_place", default=None)


@contextmanager
def counting(tracker: Tracker, place: Place | None = None) -> Iterator[None]:
    """Tasks created inside the block (and by them, in turn) count on `tracker` until they end; `place` is the
    envelope's place in its lane, for `step_aside`."""
    token = _CURRENT.set(tracker)
    place_token = _PLACE.set(place)
    try:
        yield
    finally:
        _PLACE.reset(place_token)
        _CURRENT.reset(token)


def current_tracker() -> Tracker | None:
    """The tracker of the envelope whose work this coroutine is part of, if any."""
    return _CURRENT.get()


def step_aside() -> None:
    """This envelope's work now only waits (on the answer path's governor): its place in the lane goes to the
    next envelope. Outside an envelope's work, nothing."""
    place = _PLACE.get()
    if place is not None:
        place.give_back()


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
        context = kwargs.get("context")  # the task's own, if given; else the creator's (the factory runs in it)
        tracker = context.get(_CURRENT) if context is not None else _CURRENT.get()
        if tracker is not None and tracker.add():
            task.add_done_callback(lambda _task: tracker.release())
        return task
