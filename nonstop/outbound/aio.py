"""The governor driven on an asyncio loop, for `AsyncWebClient` (Bolt's `AsyncApp`).

The same core as the thread driver (`nonstop.outbound.core`); only what waits where differs. A coroutine
that waits costs no thread, so an async call simply waits for its turn, in order, and returns the final
response (or raises what Slack refused it with, or `NotDelivered`). One scheduler task per loop hands out
the turns the governor decides; a call's own coroutine makes its tries. A call that must wait first tells its
request (`Answering.on_wait`): an `AsyncApp`'s event then gives its place in the lane to the next.

    outbound = AsyncOutbound(settings)
    client = AsyncGovernedWebClient(token=..., outbound=outbound)   # nonstop.outbound.aio_client (aiohttp)

`AsyncSupervisedSocketModeHandler` wires it into a Bolt `AsyncApp` (`nonstop.outbound.aio_client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from nonstop.config.settings import OutboundSettings
from nonstop.net.retry import RATELIMITED, Schedule, judge
from nonstop.outbound.answering import Answering
from nonstop.outbound.core import LOOK, Job, OutboundCore, param
from nonstop.outbound.limits import Limit, limit_for
from nonstop.outbound.metrics import OutboundMetrics
from nonstop.outbound.sync import LOOK_PAGES

__all__ = ["AsyncOutbound", "AsyncSender", "AsyncSharedGate"]


class AsyncSender(Protocol):
    """What the driver needs of an async client: one try of one call, no retries of its own."""

    async def send_once(self, api_method: str, kwargs: dict[str, Any]) -> SlackResponse: ...


class AsyncSharedGate(Protocol):
    """The buckets replicas share, over an async Redis client (`nonstop.outbound.shared.AsyncSharedBuckets`)."""

    async def take(self, key: str, limit: Limit) -> float: ...

    async def block(self, key: str, limit: Limit, retry_after_s: float) -> None: ...


class AsyncOutbound:
    """The way out for one event loop. Create it on (or before) the loop that will use it.

    Args:
        settings: the reply deadline and the choice for unsure posts.
        schedule: the waits between tries after a passing failure.
        metrics: where to count (default: a registry of its own).
        shared: the buckets replicas share, or None alone.
        clock: monotonic seconds (default: the running loop's clock).
    """

    def __init__(
        self,
        settings: OutboundSettings | None = None,
        *,
        schedule: Schedule | None = None,
        metrics: OutboundMetrics | None = None,
        shared: AsyncSharedGate | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.core = OutboundCore(settings or OutboundSettings(), schedule, metrics or OutboundMetrics())
        self.core.metrics.bind(lambda: self.core.waiting)
        self._shared = shared
        self._clock = clock or time.monotonic
        self._turns: dict[int, asyncio.Future[None]] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def call(
        self, sender: AsyncSender, method: str, kwargs: dict[str, Any], answering: Answering | None
    ) -> SlackResponse:
        """One Web API call through the governor: waits for its turn, tries until settled; returns the final
        response or raises what it ended with."""
        if answering is None:
            return await self._direct(sender, method, kwargs)
        now = self._clock()
        job = self.core.prepare(sender, method, kwargs, answering, now)
        go = not job.settled and self.core.submit(job, now)
        if not go and not job.settled:
            self.core.hold(job)
        while not job.settled:
            if not go:
                if answering.on_wait is not None:
                    answering.on_wait()
                await self._turn(job)
                if job.settled:
                    break
            go = False
            assert job.call is not None
            wait = await self._shared_wait(job) if self._shared is not None else 0.0
            if wait > 0:
                now = self._clock()
                if self.core.governor.again(job.call, now + wait):
                    self.core.hold(job)
                else:
                    self.core.give_up(job, "deadline", now)
                continue
            await (self._look(job) if job.step == LOOK else self._send(job))
        if job.error is not None:
            raise job.error
        assert job.response is not None
        return job.response

    # -- turns ----------------------------------------------------------------------------------------------

    async def _turn(self, job: Job) -> None:
        """Wait until the governor sends this job (or gives it up)."""
        loop = asyncio.get_running_loop()
        future = self._turns[id(job)] = loop.create_future()
        self._kick()
        try:
            await future
        except asyncio.CancelledError:  # the caller went away: its call leaves the governor, its lane moves on
            if job.call is not None and not job.settled:
                self.core.governor.drop(job.call)
                self.core.give_up(job, "failed", self._clock())
            raise
        finally:
            self._turns.pop(id(job), None)

    def _kick(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()
            # Made in an empty context: the scheduler is no part of the event whose call happened to start it
            # (nonstop.bolt.tasks counts a task on the envelope of its creator's context). No `context=`: a task
            # factory of the user's need not take it.
            self._task = contextvars.Context().run(loop.create_task, self._schedule(), name="nonstop-governor")
        assert self._wake is not None
        self._wake.set()

    async def _schedule(self) -> None:
        assert self._wake is not None
        while self._turns:
            self._wake.clear()
            now = self._clock()
            due = self.core.due(now)
            for call in due.send:
                self._go(call.job)
            for call in due.expired:
                self.core.give_up(call.job, "deadline", now)
                self._go(call.job)
            timeout = None if due.wake_at is None else max(0.0, due.wake_at - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # no task per wait, unlike wait_for
                    await self._wake.wait()

    def _go(self, job: Job) -> None:
        future = self._turns.get(id(job))
        if future is not None and not future.done():
            future.set_result(None)

    # -- tries ----------------------------------------------------------------------------------------------

    async def _send(self, job: Job) -> None:
        response: SlackResponse | None = None
        error: BaseException | None = None
        try:
            response = await job.sender.send_once(job.method, job.try_kwargs())
        except Exception as e:
            error = e
        if self._shared is not None and error is not None:  # before the call is back in the governor
            outcome = judge(error)
            if outcome.kind == RATELIMITED:
                with contextlib.suppress(Exception):
                    await self._shared.block(job.post_key, job.post_limit, outcome.retry_after_s)
        self.core.after_try(job, response, error, self._clock())
        self._kick()

    async def _look(self, job: Job) -> None:
        method, params = job.lookup()
        messages: list[Any] = []
        error: BaseException | None = None
        try:
            for _ in range(LOOK_PAGES):
                page = await job.sender.send_once(method, {"params": dict(params)})
                self.core.seen(page, None)
                if not job.read_page(page, messages, params):
                    break
        except Exception as e:
            error = e
        self.core.after_look(job, messages, error, self._clock())
        self._kick()

    async def _shared_wait(self, job: Job) -> float:
        assert self._shared is not None
        assert job.call is not None
        try:
            return await self._shared.take(job.call.key, job.call.limit)
        except Exception:  # the shared gate is an optimisation: the local one still guards
            return 0.0

    async def _direct(self, sender: AsyncSender, method: str, kwargs: dict[str, Any]) -> SlackResponse:
        key, limit = limit_for(method, param(kwargs, "channel"))
        bucket = self.core.governor.bucket(key, limit)
        while (ready := bucket.ready_at(self._clock())) > self._clock():
            await asyncio.sleep(ready - self._clock())
        bucket.take(self._clock())
        try:
            response = await sender.send_once(method, kwargs)
        except SlackApiError as e:
            self.core.seen(None, e)
            outcome = judge(e)
            if outcome.kind == RATELIMITED:
                bucket.ratelimited(self._clock(), outcome.retry_after_s)
            raise
        self.core.seen(response, None)
        return response

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait (bounded) until no call waits; True if so. For a drain."""
        deadline = self._clock() + timeout_s
        while self._turns or self.core.waiting:
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True
