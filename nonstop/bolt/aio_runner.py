"""`AsyncBoltRunner`: runs a Bolt `AsyncApp` for the pipeline, on the app's own event loop, and says when each
envelope's work is done.

The links, acks and ledger run on the supervisor's loop, in a thread of their own; the app, its clients and
its listeners live on another loop (the caller's, where the `AsyncApp` was made and its handler connected).
Each envelope crosses over with `run_coroutine_threadsafe`, so an async listener that blocks its loop delays
its own work, never an ack. The same two lanes as for an `App` on threads (`nonstop.bolt.runner`): at most
`event_concurrency` events in progress on the app's loop at once, and slash commands and interactions in a lane
of their own (`command_concurrency`), never queued behind events. An event whose listeners only wait on the
answer path's governor gives its place to the next (`nonstop.bolt.tasks.step_aside`). An event is done once its
dispatch and every task it started have ended (`nonstop.bolt.tasks`: the app's loop must have `TaskCounting`
installed); an interaction once Bolt has decided its ack, built by Bolt's own socket-mode adapter code
(`send_async_response`).

Its callbacks (`done`, `acked`) run on the app's loop; the driver hops back to its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from slack_bolt.adapter.socket_mode.async_internals import send_async_response
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.socket_mode.request import SocketModeRequest

from nonstop.bolt.context import async_bolt_request
from nonstop.bolt.lanes import Tracker
from nonstop.bolt.runner import AckCapture, FailureReply, dispatch_failed, dispatch_succeeded
from nonstop.bolt.tasks import Place, counting
from nonstop.status import Telemetry

__all__ = ["AsyncBoltRunner"]


class _AsyncAckCapture(AckCapture):
    """`AckCapture` for Bolt's async adapter code, which awaits the client's send."""

    async def send_socket_mode_response(self, response: Any) -> None:  # type: ignore[override]
        self.response = response


class AsyncBoltRunner:
    """Args:
    app: the Bolt `AsyncApp`.
    loop: the loop the app lives on, where its dispatch and listeners run (it must count tasks:
        `nonstop.bolt.tasks.TaskCounting`).
    event_concurrency: events in progress on that loop at once (the event lane).
    command_concurrency: slash commands and interactions in progress at once (their own lane).
    telemetry: where handler durations and failures are counted.
    failure_reply: what a user is told when Bolt itself fails on their slash command.
    """

    def __init__(
        self,
        app: AsyncApp,
        loop: asyncio.AbstractEventLoop,
        *,
        event_concurrency: int,
        command_concurrency: int,
        telemetry: Telemetry,
        failure_reply: FailureReply | None = None,
    ) -> None:
        self._app = app
        self._loop = loop
        self._telemetry = telemetry
        self._failure_reply = failure_reply
        self._event_lane = asyncio.Semaphore(event_concurrency)  # bound to the app's loop at first use
        self._command_lane = asyncio.Semaphore(command_concurrency)
        self._idle = threading.Condition()
        self._events = 0  # handed over and not over (queued for the lane, or running)
        self._interactions = 0
        self._taking_events = True
        self._leave_queued = False
        self._closed = False

    # -- from the supervisor's loop ------------------------------------------------------------------

    def run_event(
        self, request: SocketModeRequest, done: Callable[[], None], runs: int = 1, *, recovered: bool = False
    ) -> bool:
        """Dispatch an event on the app's loop; `done()` (there) once it and every task it started have ended.
        `runs`: the ledger's count of its starts; `recovered`: it came by no link. False, and `done` never
        called, when the runner no longer takes events or the app's loop is closed."""
        if not self._taking_events:
            return False
        return self._submit(self._event(request, done, runs, recovered), "_events")

    def run_interaction(self, request: SocketModeRequest, acked: Callable[[dict[str, Any] | None], None]) -> bool:
        """Dispatch an interaction on the app's loop; `acked(payload)` (there) with what to ack it with. Taken
        until `close()`, also while stopping: a user is waiting."""
        if self._closed:
            return False
        return self._submit(self._interaction(request, acked), "_interactions")

    def stop_events(self, timeout_s: float, *, leave_queued: bool) -> bool:
        """Take no new events and wait (at most `timeout_s`, from a thread other than either loop) for the events
        and interactions under way. `leave_queued`: events still waiting for the lane are dropped (the caller
        keeps them on record). True if everything finished in time."""
        self._taking_events = False
        self._leave_queued = leave_queued
        with self._idle:
            return self._idle.wait_for(lambda: self._events == 0 and self._interactions == 0, timeout_s)

    def close(self) -> None:
        """Take nothing more; work still running on the app's loop finishes on its own."""
        self._taking_events = False
        self._closed = True

    def _submit(self, work: Coroutine[Any, Any, None], counter: str) -> bool:
        with self._idle:
            setattr(self, counter, getattr(self, counter) + 1)
        try:
            asyncio.run_coroutine_threadsafe(work, self._loop)
        except RuntimeError:  # the app's loop is closed: nothing can run there any more
            work.close()
            self._over(counter)
            return False
        return True

    def _over(self, counter: str) -> None:
        with self._idle:
            setattr(self, counter, getattr(self, counter) - 1)
            self._idle.notify_all()

    # -- on the app's loop ---------------------------------------------------------------------------

    async def _event(self, request: SocketModeRequest, done: Callable[[], None], runs: int, recovered: bool) -> None:
        place: Place | None = None
        try:
            await self._event_lane.acquire()
            place = Place(self._event_lane)  # held until the event's tasks have ended, or they only wait on Slack
            if self._leave_queued:
                return  # stopping, not started: it stays on record for the next start
            await self._run(request, done, place, runs=runs, recovered=recovered)
        finally:
            if place is not None:
                place.give_back()
            self._over("_events")

    async def _interaction(self, request: SocketModeRequest, acked: Callable[[dict[str, Any] | None], None]) -> None:
        place: Place | None = None
        try:
            await self._command_lane.acquire()
            place = Place(self._command_lane)
            await self._run(request, lambda: None, place, acked)
        finally:
            if place is not None:
                place.give_back()
            self._over("_interactions")

    async def _run(
        self,
        request: SocketModeRequest,
        done: Callable[[], None],
        place: Place,
        acked: Callable[[dict[str, Any] | None], None] | None = None,
        *,
        runs: int = 1,
        recovered: bool | None = None,
    ) -> None:
        """Dispatch `request`, counting the tasks it starts; hand its ack payload to `acked`, then wait until it
        and its tasks are over and call `done`. Its tasks may give up its `place` earlier (`step_aside`)."""
        over = asyncio.Event()
        tracker = Tracker(over.set, runs)  # released on this loop: the tasks' done callbacks run here
        try:
            with counting(tracker, place):
                payload = await self._dispatch(request, recovered)
            if acked is not None:
                acked(payload)
        finally:
            tracker.release()
        await over.wait()
        done()

    async def _dispatch(self, request: SocketModeRequest, recovered: bool | None) -> dict[str, Any] | None:
        started = time.time()
        try:
            bolt_response = await self._app.async_dispatch(async_bolt_request(request, recovered))
            capture = _AsyncAckCapture()
            await send_async_response(capture, request, bolt_response, started)  # type: ignore[arg-type]
        except Exception:
            return dispatch_failed(request, started, self._telemetry, self._failure_reply)
        return dispatch_succeeded(request, started, self._telemetry, capture.response)
