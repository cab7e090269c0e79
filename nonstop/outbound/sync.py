"""The governor driven for the sync `WebClient`: what waits where.

- **A call that may go now goes now**, on the listener's own thread: a listener that is not held up sees
  its answer, or Slack's refusal, exactly as without Nonstop.
- **A call that must wait returns at once** with a `PendingResponse`, and the listener's thread is free:
  its conversation owes earlier answers, Slack said 429, or Slack had a bad moment. The call waits in the
  governor, not on a thread; a scheduler thread hands it, when its turn comes, to a small pool of sender
  threads. It holds its event's tracker (`nonstop.lanes`) until delivered or given up: an event is
  finished only when its answers are.
- **A post that may already be in Slack** (an unsure try, an event the ledger runs again) is looked up in
  its conversation first where the token's scopes allow (`nonstop.outbound.core`).
- **A call outside any request** (the bot's own, e.g. auth.test at start) waits at the gate on its caller's
  thread, goes once, and teaches the governor its 429s; its caller keeps its own policy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from nonstop.config.settings import OutboundSettings
from nonstop.config.urls import shared_ledger
from nonstop.net.retry import RATELIMITED, Schedule, judge
from nonstop.outbound.answering import Answering
from nonstop.outbound.core import LOOK, SETTLED, Job, OutboundCore, param
from nonstop.outbound.limits import Limit, limit_for
from nonstop.outbound.metrics import OutboundMetrics, outbound_metrics_in
from nonstop.outbound.pending import PendingResponse
from nonstop.outbound.scopes import Scopes, say_history

if TYPE_CHECKING:
    from nonstop.outbound.shared import SharedBuckets

__all__ = ["LOOK_PAGES", "SENDERS", "Outbound", "Sender", "SharedGate"]

log = logging.getLogger("nonstop.outbound")

SENDERS = 32
"""Threads that send the calls that waited, as many as the event lane runs listeners (NONSTOP_HANDLER_THREADS'
default): a call that had to wait must not leave slower than it would have from its listener's thread. A
sender waiting on Slack holds a socket, not a core or the GIL."""

LOOK_PAGES = 5
"""At most this many pages read per lookup (5 x 200 messages): a thread longer than that is not searched to
its start; the event's answers are its newest messages anyway."""


class Sender(Protocol):
    """What the driver needs of a client: one try of one call, no retries of its own."""

    def send_once(self, api_method: str, kwargs: dict[str, Any]) -> SlackResponse: ...


class SharedGate(Protocol):
    """The buckets replicas share (`nonstop.outbound.shared`): seconds to wait before this call (0: go)."""

    def take(self, key: str, limit: Limit) -> float: ...

    def block(self, key: str, limit: Limit, retry_after_s: float) -> None: ...


class Outbound:
    """The way out for one process: the governor, its threads, the scopes seen, the metrics.

    Args:
        settings: the reply deadline and the choice for unsure posts.
        schedule: the waits between tries after a passing failure (the supervisor's, `nonstop.policy`).
        metrics: where to count (default: a registry of its own).
        shared: the buckets replicas share, or None alone.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        settings: OutboundSettings | None = None,
        *,
        schedule: Schedule | None = None,
        metrics: OutboundMetrics | None = None,
        shared: SharedGate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = OutboundCore(settings or OutboundSettings(), schedule, metrics or OutboundMetrics())
        self.core.metrics.bind(lambda: self.core.waiting)
        self._shared = shared
        self._owned_gate: SharedBuckets | None = None  # made by `for_ledger`: closed by `close`
        self._clock = clock
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # senders wait on it for work
        self._idle = threading.Condition(lock)  # wait_idle waits on it
        self._futures: dict[int, Future[SlackResponse]] = {}
        self._senders: list[threading.Thread] = []
        self._ready: list[Job] = []  # their turn has come, no sender has taken them yet
        self._closed = False
        self._trying = 0  # tries under way, on any thread

    @classmethod
    def for_ledger(
        cls, settings: OutboundSettings, *, ledger_url: str, schedule: Schedule | None, registry: CollectorRegistry
    ) -> Outbound:
        """The process's way out as the bot and the sync drop-in make it: counted in `registry`, saying what it does
        with unsure answers whenever the scopes seen change, and on a Redis ledger (replicas) with its buckets
        shared through that Redis (closed with it). Its senders start on `start()` or the first call that waits."""
        shared = None
        if shared_ledger(ledger_url):
            from nonstop.outbound.shared import SharedBuckets  # noqa: PLC0415 - needs the replicas' redis package

            shared = SharedBuckets.from_url(ledger_url)
        outbound = cls(settings, schedule=schedule, metrics=outbound_metrics_in(registry), shared=shared)
        outbound._owned_gate = shared
        outbound.scopes.on_change(lambda _granted: say_history(outbound.scopes, settings.unsure_answer))
        return outbound

    @property
    def settings(self) -> OutboundSettings:
        return self.core.settings

    @property
    def scopes(self) -> Scopes:
        return self.core.scopes

    # -- the entry point (GovernedWebClient.api_call) ----------------------------------------------------

    def call(self, sender: Sender, method: str, kwargs: dict[str, Any], answering: Answering | None) -> SlackResponse:
        """One Web API call through the governor. Returns its response, a `PendingResponse` if it must wait,
        or raises what Slack refused it with (on the caller's thread only when it went at once)."""
        if answering is None:
            return self._direct(sender, method, kwargs)
        now = self._clock()
        with self._cond:
            job = self.core.prepare(sender, method, kwargs, answering, now)
            if job.settled:
                return self._result(job)
            go = self.core.submit(job, now)
            if go:
                self._trying += 1
            else:
                self._wait(job)
        if not go:
            return self._pending(job)
        wait = self._shared_wait(job) if self._shared is not None else 0.0
        if wait > 0:  # other replicas used the shared budget: wait in the governor, not on this thread
            with self._cond:
                self._trying -= 1
                self._requeue(job, now + wait, now)
            return self._pending(job)
        try:
            self._send(job)
        finally:
            self._tried(wake=True)
        return self._result(job) if job.settled else self._pending(job)

    # -- waiting ----------------------------------------------------------------------------------------

    def _wait(self, job: Job) -> None:
        """Under the lock: the call waits in the governor. A sleeping sender looks at it again, unless its lane is
        busy: whoever sends the lane's current call asks the governor again when done (a wake-up per queued
        call would cost every listener a thread switch in a burst)."""
        self.core.hold(job)
        assert job.call is not None
        if not self.core.governor.busy(job.call.lane):
            self._cond.notify()

    def _requeue(self, job: Job, at: float, now: float) -> None:
        assert job.call is not None
        if self.core.governor.again(job.call, at):
            self._wait(job)
        else:
            self._settled(job, self.core.give_up(job, "deadline", now))

    def _pending(self, job: Job) -> SlackResponse:
        with self._cond:
            if job.settled:  # settled meanwhile by a sender thread
                return self._result(job)
            job.pending = True
            future = self._futures.setdefault(id(job), Future())
        self._start()
        return PendingResponse(client=job.sender, api_url=job.api_url, req_args=job.kwargs, future=future)

    def _settled(self, job: Job, verdict: str) -> None:
        """Under the lock, after the core decided: wake whoever reads the job's response."""
        if verdict != SETTLED:
            return
        future = self._futures.pop(id(job), None)
        if future is None:
            return
        if job.error is not None:
            future.set_exception(job.error)
        else:
            future.set_result(job.response)  # type: ignore[arg-type]

    @staticmethod
    def _result(job: Job) -> SlackResponse:
        if job.error is not None:
            raise job.error  # a refusal, on the caller's thread, as without Nonstop
        assert job.response is not None
        return job.response

    def start(self) -> None:
        """Start the sender threads now (else on the first call that waits). They take the calling thread's
        scheduling priority: start them from the main thread, not from a listener's lower-priority one."""
        self._start()

    def _start(self) -> None:
        with self._cond:
            if self._senders or self._closed:
                return
            for i in range(SENDERS):
                thread = threading.Thread(target=self._send_loop, name=f"nonstop-outbound-{i}", daemon=True)
                self._senders.append(thread)
                thread.start()

    def _send_loop(self) -> None:
        """One sender: takes the next call whose turn has come and tries it, then the next. The governor is
        asked again by whichever sender is free, so a conversation's next answer leaves from the thread that
        sent the previous one, with no hand-over in between; a sender with nothing due sleeps until the
        governor's next wake-up (or until a call is queued)."""
        while True:
            with self._cond:
                while not self._ready:
                    if self._closed:
                        return
                    now = self._clock()
                    due = self.core.due(now)
                    for call in due.expired:
                        self._settled(call.job, self.core.give_up(call.job, "deadline", now))
                    if due.send:
                        self._ready.extend(call.job for call in due.send)
                        self._cond.notify(len(due.send) - 1)  # other senders, for the other conversations
                        break
                    self._cond.wait(None if due.wake_at is None else max(0.0, due.wake_at - now))
                job = self._ready.pop(0)
                self._trying += 1
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            wait = self._shared_wait(job) if self._shared is not None else 0.0
            if wait > 0:
                with self._cond:
                    now = self._clock()
                    self._requeue(job, now + wait, now)
            elif job.step == LOOK:
                self._look(job)
            else:
                self._send(job)
        except Exception:  # a bug here must not leave the call (and its event) hanging
            log.exception("the answer path failed on a %s call; giving it up", job.method)
            with self._cond:
                assert job.call is not None
                self.core.governor.done(job.call)
                self._settled(job, self.core.give_up(job, "failed", self._clock()))
        finally:
            self._tried(wake=False)  # this sender asks the governor again itself

    def _tried(self, wake: bool) -> None:
        """A try is over. `wake`: it was made on a caller's thread, so its lane's next call needs a sender."""
        with self._cond:
            self._trying -= 1
            if wake:
                self._cond.notify()
            if self._trying == 0:
                self._idle.notify_all()

    # -- tries ----------------------------------------------------------------------------------------------

    def _send(self, job: Job) -> None:
        response: SlackResponse | None = None
        error: BaseException | None = None
        try:
            response = job.sender.send_once(job.method, job.try_kwargs())
        except Exception as e:
            error = e
        with self._cond:
            self._settled(job, self.core.after_try(job, response, error, self._clock()))
        if self._shared is not None and error is not None:
            outcome = judge(error)
            if outcome.kind == RATELIMITED:
                self._shared_block(job, outcome.retry_after_s)

    def _look(self, job: Job) -> None:
        method, params = job.lookup()
        messages: list[Any] = []
        error: BaseException | None = None
        try:
            for _ in range(LOOK_PAGES):
                page = job.sender.send_once(method, {"params": dict(params)})
                with self._cond:
                    self.core.seen(page, None)
                if not job.read_page(page, messages, params):
                    break
        except Exception as e:
            error = e
        with self._cond:
            self._settled(job, self.core.after_look(job, messages, error, self._clock()))

    def _shared_wait(self, job: Job) -> float:
        assert self._shared is not None
        assert job.call is not None
        try:
            return self._shared.take(job.call.key, job.call.limit)
        except Exception:  # the shared gate is an optimisation: the local one still guards
            return 0.0

    def _shared_block(self, job: Job, retry_after_s: float) -> None:
        assert self._shared is not None
        try:
            self._shared.block(job.post_key, job.post_limit, retry_after_s)
        except Exception:
            return

    # -- the bot's own calls --------------------------------------------------------------------------------

    def _direct(self, sender: Sender, method: str, kwargs: dict[str, Any]) -> SlackResponse:
        key, limit = limit_for(method, param(kwargs, "channel"))
        while True:
            now = self._clock()
            with self._cond:
                bucket = self.core.governor.bucket(key, limit)
                ready = bucket.ready_at(now)
                if ready <= now:
                    bucket.take(now)
                    break
            time.sleep(min(ready - now, self.settings.reply_deadline_s))
        try:
            response = sender.send_once(method, kwargs)
        except SlackApiError as e:
            outcome = judge(e)
            with self._cond:
                self.core.seen(None, e)
                if outcome.kind == RATELIMITED:
                    self.core.governor.bucket(key, limit).ratelimited(self._clock(), outcome.retry_after_s)
            raise
        with self._cond:
            self.core.seen(response, None)
        return response

    # -- stopping -------------------------------------------------------------------------------------------

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait (bounded) until no call waits or is being tried; True if so. For a drain."""
        with self._cond:
            return self._idle.wait_for(
                lambda: self.core.waiting == 0 and self._trying == 0 and not self._ready, timeout_s
            )

    def close(self) -> None:
        """Stop the scheduler and the senders; calls still waiting are left unsettled (their events stay
        unfinished in the ledger, and run again at the next start)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            senders = list(self._senders)
        for thread in senders:
            thread.join(5)
        if self._owned_gate is not None:
            self._owned_gate.close()
