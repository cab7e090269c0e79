"""What one request's Web API calls answer: the event, its place, its tracker, and the replies looked up.

Built once per request by the middleware (`nonstop.outbound.client.AnswerThroughGovernor`) from the body
Bolt received and from the lane the request runs in, then carried by that request's `WebClient`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from nonstop.bolt.lanes import Tracker

__all__ = ["Answering"]


class Answering:
    """The context of one request's calls. Thread-safe (a listener may post from several threads).

    Args:
        event_id: the Events API event id (None for commands and interactions: their posts are not marked).
        event_ts: the event's message ts, when it has one: the answers' order, and where a lookup starts.
        tracker: the envelope's tracker (`nonstop.lanes`): an answer still on its way holds it.
        runs: how many times the ledger has started this event (over 1: it ran before, its answers may exist).
        message_ts: the ts of the message the event is about (a mention's `ts`; not a bare `event_ts`): its
            answers are marked with it, and found by it.
        on_wait: called (on the caller's task) when one of its calls must wait in the governor: an `AsyncApp`'s
            event then gives up its place in its lane (`nonstop.bolt.tasks.step_aside`).
    """

    def __init__(
        self,
        *,
        event_id: str | None,
        event_ts: str | None,
        tracker: Tracker | None = None,
        runs: int = 1,
        message_ts: str | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.event_id = event_id
        self.event_ts = event_ts
        self.message_ts = message_ts
        self.tracker = tracker
        self.runs = runs
        self.on_wait = on_wait
        self.rank = _rank(event_ts)
        self._posts = itertools.count()
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str | None], dict[int, dict[str, Any]]] = {}

    @classmethod
    def of_request(
        cls, body: dict[str, Any], tracker: Tracker | None, on_wait: Callable[[], None] | None = None
    ) -> Answering:
        """The context of a request body as Bolt received it (Events API, command or interaction)."""
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        event_id = body.get("event_id") if isinstance(body.get("event_id"), str) else None
        ts = event.get("ts") or event.get("event_ts")
        message_ts = event.get("ts")
        return cls(
            event_id=event_id or None,
            event_ts=ts if isinstance(ts, str) else None,
            tracker=tracker,
            runs=tracker.runs if tracker is not None else 1,
            message_ts=message_ts if isinstance(message_ts, str) and message_ts else None,
            on_wait=on_wait,
        )

    @property
    def replayed(self) -> bool:
        """The event ran before (a crash, a replica that died): Slack may already have some of its answers."""
        return self.runs > 1

    def next_reply(self) -> int:
        """The place of the event's next post (0, 1, …), in the order the listener makes them."""
        return next(self._posts)

    def looked(self, conversation: str, thread_ts: str | None, found: dict[int, dict[str, Any]]) -> None:
        """Remember what a lookup found in `conversation` (or its thread)."""
        with self._lock:
            self._found[(conversation, thread_ts)] = dict(found)

    def known(self, conversation: str, thread_ts: str | None) -> dict[int, dict[str, Any]] | None:
        """The event's replies found in `conversation` (or its thread) by an earlier lookup; None: not looked yet."""
        with self._lock:
            found = self._found.get((conversation, thread_ts))
            return None if found is None else dict(found)


def _rank(ts: str | None) -> float:
    """A message ts ("1700000000.000100") as a number that orders events; now when there is none."""
    try:
        return float(ts) if ts else time.time()
    except ValueError:
        return time.time()
