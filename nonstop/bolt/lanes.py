"""Lanes: event listeners and command listeners never share a thread pool, and an envelope's end is known.

Bolt hands every listener (and lazy listener) to its `listener_executor`. `LaneExecutor` takes that
place: each submission goes to the pool of the lane it came from — the lane of the dispatch thread
that ran Bolt for the envelope — so `/nonstop ping` is never queued behind mention listeners stuck
on a slow Web API. It also counts each envelope's listener runs on its `Tracker`, which calls back
once dispatch *and* every listener it started have returned: the moment an event is finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

EVENTS = "events"
COMMANDS = "commands"  # slash commands and interactive payloads: a user waits for the ack


class Tracker:
    """Counts the outstanding work of one envelope (its dispatch counts as one); `on_done` runs once.
    `runs`: how many times this event has been started, this run included (over 1: replayed by the ledger)."""

    def __init__(self, on_done: Callable[[], None], runs: int = 1) -> None:
        self._on_done = on_done
        self.runs = runs
        self._lock = threading.Lock()
        self._outstanding = 1  # the dispatch itself, released by whoever runs it

    def add(self) -> bool:
        """One more piece of work (a listener, an answer still on its way); False if the envelope is already
        finished (then there is nothing to release)."""
        with self._lock:
            if self._outstanding == 0:
                return False
            self._outstanding += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._outstanding -= 1
            done = self._outstanding == 0
        if done:
            self._on_done()


@dataclass(frozen=True)
class _Work:
    lane: str
    tracker: Tracker | None


_current = threading.local()


@contextmanager
def working_on(lane: str, tracker: Tracker | None = None) -> Iterator[None]:
    """Mark this thread as running work of `lane` (for `tracker`) while inside the block."""
    previous = getattr(_current, "work", None)
    _current.work = _Work(lane, tracker)
    try:
        yield
    finally:
        _current.work = previous


def current_tracker() -> Tracker | None:
    """The tracker of the envelope this thread works on, if any (the answer path holds it until delivered)."""
    work: _Work | None = getattr(_current, "work", None)
    return work.tracker if work is not None else None


class LaneExecutor(Executor):
    """Bolt's listener executor, one pool per lane. Submissions from outside any lane go to `EVENTS`."""

    def __init__(self, pools: dict[str, ThreadPoolExecutor]) -> None:
        self.pools = pools

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        work: _Work | None = getattr(_current, "work", None)
        lane = work.lane if work is not None else EVENTS
        tracker = work.tracker if work is not None else None
        if tracker is not None:
            tracker.add()

        def run() -> Any:
            with working_on(lane, tracker):  # work a listener submits in turn stays in its lane, tracked
                try:
                    return fn(*args, **kwargs)
                finally:
                    if tracker is not None:
                        tracker.release()

        try:
            return self.pools[lane].submit(run)
        except RuntimeError:  # shut down while stopping
            if tracker is not None:
                tracker.release()
            raise

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
