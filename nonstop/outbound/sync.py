"""The governor driven for the sync `WebClient`: what waits where.

- **A call that may go now goes now**, on the listener's own thread: a listener that is not held up sees
  its answer, or Slack's refusal, exactly as without Nonstop.
- **A call that must wait returns at once** with a `PendingResponse`, and the listener's thread is free:
  its conversation owes earlier answers, Slack said 429, or Slack had a bad moment. The call waits in the
  governor, not on a thread, and a small pool of sender threads sends it when its turn comes, in order.
  It holds its event's tracker (`nonstop.lanes`) until delivered or given up: an event is finished only
  when its answers are.
- **A post that may have reached Slack** (`nonstop.policy.judge` says unsure) is looked up in the
  conversation (its metadata, `nonstop.outbound.marks`) where the token's scopes allow, before it is posted
  again; so is every post of an event the ledger runs again. Where they do not, NONSTOP_UNSURE_ANSWER says
  whether to post again (maybe twice) or not (maybe never).
- **A call outside any request** (the bot's own, e.g. auth.test at start) waits at the gate on its caller's
  thread, goes once, and teaches the governor its 429s; its caller keeps its own policy.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from nonstop import network
from nonstop.outbound.answering import Answering
from nonstop.outbound.governor import Call, Governor
from nonstop.outbound.limits import Limit, limit_for
from nonstop.outbound.marks import lookup_call, mark, marked_replies
from nonstop.outbound.metrics import OutboundMetrics
from nonstop.outbound.pending import NotDelivered, PendingResponse, settled
from nonstop.outbound.scopes import Scopes
from nonstop.policy import CREATES, FINAL, OK, RATELIMITED, SETTLED_BY, UNSURE, Outcome, Schedule, judge
from nonstop.settings import OutboundSettings

__all__ = ["ANSWER_METHODS", "Outbound", "Sender", "SharedGate"]

log = logging.getLogger("nonstop.outbound")

ANSWER_METHODS = frozenset(
    {
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.update",
        "chat.delete",
        "chat.meMessage",
        "chat.scheduleMessage",
        "reactions.add",
        "reactions.remove",
    }
)
"""Methods that say something in a conversation: their calls to one conversation keep their order."""

SENDERS = 8
"""Threads that send the calls that waited: the conversations answered at once, each one call at a time."""

LOOK_PAGES = 5
"""At most this many pages read per lookup (5 x 200 messages): a thread longer than that is not searched to
its start; the event's answers are its newest messages anyway."""

SEND, LOOK = "send", "look"


class Sender(Protocol):
    """What the driver needs of a client: one try of one call, no retries of its own."""

    def send_once(self, api_method: str, kwargs: dict[str, Any]) -> SlackResponse: ...


class SharedGate(Protocol):
    """The buckets replicas share (`nonstop.outbound.shared`): seconds to wait before this call (0: go)."""

    def take(self, key: str, limit: Limit) -> float: ...

    def block(self, key: str, limit: Limit, retry_after_s: float) -> None: ...


@dataclass(eq=False)
class Job:
    """One call's state between tries (the governor's `Call.job`)."""

    sender: Sender
    method: str
    kwargs: dict[str, Any]
    answering: Answering
    conversation: str | None
    thread_ts: str | None
    reply: int | None  # its place among the event's posts, when it is a marked post
    submitted_at: float
    post_key: str
    post_limit: Limit
    future: Future[SlackResponse]
    step: str = SEND
    pending: bool = False  # returned to the caller before it settled
    held: bool = False  # holds the event's tracker
    tried: bool = False
    unsure: bool = False  # an earlier try may have been delivered
    last: str = ""  # the last failure, for the log line if it is given up


_lanes = itertools.count()


def _param(kwargs: dict[str, Any], name: str) -> str | None:
    for part in ("json", "params", "data"):
        body = kwargs.get(part)
        if isinstance(body, dict) and isinstance(body.get(name), str) and body[name]:
            return body[name]
    return None


class Outbound:
    """The way out for one process: the governor, its threads, the scopes seen, the metrics.

    Args:
        settings: the reply deadline and the choice for unsure posts.
        schedule: the waits between tries after a passing failure (the supervisor's, `nonstop.policy`).
        metrics: where to count (default: a registry of its own).
        shared: the buckets replicas share, or None alone.
        clock: monotonic seconds (tests pass a fake).
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
        self.settings = settings or OutboundSettings()
        self.governor = Governor(schedule=schedule)
        self.scopes = Scopes()
        self.metrics = metrics or OutboundMetrics()
        self.metrics.bind(lambda: self.governor.waiting)
        self._shared = shared
        self._clock = clock
        self._cond = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._trying = 0  # tries under way, on any thread
        self._unreadable: set[str] = set()  # conversations Slack would not let the bot read

    # -- the entry point (GovernedWebClient.api_call) ----------------------------------------------------

    def call(self, sender: Sender, method: str, kwargs: dict[str, Any], answering: Answering | None) -> SlackResponse:
        """One Web API call through the governor. Returns its response, a `PendingResponse` if it must wait,
        or raises what Slack refused it with (on the caller's thread only when it went at once)."""
        if answering is None:
            return self._direct(sender, method, kwargs)
        now = self._clock()
        conversation, thread_ts = _param(kwargs, "channel"), _param(kwargs, "thread_ts")
        reply = None
        if method == "chat.postMessage" and answering.event_id:
            index = answering.next_reply()
            reply = index if mark(kwargs, answering.event_id, index) else None
        post_key, post_limit = limit_for(method, conversation)
        job = Job(
            sender, method, kwargs, answering, conversation, thread_ts, reply, now, post_key, post_limit, Future()
        )
        if reply is not None and answering.replayed and conversation:
            known = answering.known(conversation, thread_ts)
            if known is not None and reply in known:  # an earlier run's post, already found
                return self._found(job, known[reply])
            if known is None and self._may_look(conversation):
                job.step = LOOK
        lane = conversation if conversation and method in ANSWER_METHODS else f"{method}#{next(_lanes)}"
        call = Call(method, lane, (answering.rank, now), now + self.settings.reply_deadline_s, post_key, post_limit)
        call.job = job
        if job.step == LOOK:
            call.key, call.limit = self._look_limit(job)
        with self._cond:
            go = job.step == SEND and self.governor.submit(call, now)
            if go:
                self._trying += 1
            else:
                self._hold(job)
        if not go:
            return self._pending(job)
        wait = self._shared_wait(call) if self._shared is not None else 0.0
        if wait > 0:  # other replicas used the shared budget: wait in the governor, not on this thread
            with self._cond:
                self._trying -= 1
                if self.governor.again(call, now + wait):
                    self._hold(job)
                else:
                    self._give_up(call, "deadline")
            return self._pending(job)
        try:
            response, error = self._try(call)
            self._settle(call, response, error)
        finally:
            with self._cond:
                self._trying -= 1
                self._cond.notify_all()
        if job.future.done():
            return job.future.result()  # raises a refusal, as without Nonstop
        return self._pending(job)

    # -- waiting ----------------------------------------------------------------------------------------

    def _pending(self, job: Job) -> PendingResponse:
        job.pending = True
        self._start()
        sender: Any = job.sender
        return PendingResponse(
            client=sender,
            api_url=f"{getattr(sender, 'base_url', '')}{job.method}",
            req_args=job.kwargs,
            future=job.future,
        )

    def _hold(self, job: Job) -> None:
        """Under the lock: the call waits; its event is not finished until it settles."""
        tracker = job.answering.tracker
        if not job.held and tracker is not None:
            job.held = tracker.add()
        self._cond.notify_all()

    def _release(self, job: Job) -> None:
        if job.held:
            job.held = False
            tracker = job.answering.tracker
            if tracker is not None:
                tracker.release()

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None or self._closed:
                return
            self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="nonstop-outbound")
            self._thread = threading.Thread(target=self._loop, name="nonstop-governor", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        """The scheduler: hands every call whose turn has come to the senders, gives up the late ones."""
        with self._cond:
            while not self._closed:
                now = self._clock()
                due = self.governor.due(now)
                for call in due.send:
                    self._trying += 1
                    assert self._pool is not None
                    self._pool.submit(self._run, call)
                for call in due.expired:
                    self._give_up(call, "deadline")
                self._cond.wait(None if due.wake_at is None else max(0.0, due.wake_at - now))

    def _run(self, call: Call) -> None:
        try:
            if self._shared is not None:
                wait = self._shared_wait(call)
                if wait > 0:
                    with self._cond:
                        if not self.governor.again(call, self._clock() + wait):
                            self._give_up(call, "deadline")
                    return
            if call.job.step == LOOK:
                self._look(call)
            else:
                response, error = self._try(call)
                self._settle(call, response, error)
        except Exception:  # a bug here must not leave the call (and its event) hanging
            log.exception("the answer path failed on a %s call; giving it up", call.method)
            with self._cond:
                self.governor.done(call)
                self._give_up(call, "refused")
        finally:
            with self._cond:
                self._trying -= 1
                self._cond.notify_all()

    def _shared_wait(self, call: Call) -> float:
        assert self._shared is not None
        try:
            return self._shared.take(call.key, call.limit)
        except Exception:  # the shared gate is an optimisation: alone, the local one still guards
            log.debug("shared rate limit unavailable", exc_info=True)
            return 0.0

    # -- one try, and what it means -----------------------------------------------------------------------

    def _try(self, call: Call) -> tuple[SlackResponse | None, BaseException | None]:
        job: Job = call.job
        kwargs = {k: dict(v) if isinstance(v, dict) else v for k, v in job.kwargs.items()}  # the SDK may add to them
        job.tried = True
        try:
            return job.sender.send_once(job.method, kwargs), None
        except Exception as e:
            return None, e

    def _judge(self, job: Job, error: BaseException | None) -> Outcome:
        if error is not None and network.current().problem(error, getattr(job.sender, "base_url", "")) is not None:
            return Outcome(FINAL, "network")  # a certificate or a proxy login: retrying cannot fix it
        outcome = judge(error)
        if outcome.kind == FINAL and job.unsure and SETTLED_BY.get(job.method) == outcome.cause:
            return Outcome(OK)  # the earlier, unsure try was delivered
        return outcome

    def _settle(self, call: Call, response: SlackResponse | None, error: BaseException | None) -> None:
        job: Job = call.job
        self._seen(response, error)
        outcome = self._judge(job, error)
        now = self._clock()
        if outcome.kind in (OK, FINAL):
            with self._cond:
                self.governor.done(call)
            self.metrics.waited(job.method, now - job.submitted_at)
            if outcome.kind == OK:
                if response is None and isinstance(error, SlackApiError):  # settled by a repeated try's error
                    response = settled(job.sender, "", job.kwargs, {"ok": True})
                job.future.set_result(response)  # type: ignore[arg-type]
            else:
                assert error is not None
                if job.pending:
                    self._refused(job, outcome)
                job.future.set_exception(error)
            self._release(job)
            return
        self.metrics.retry(job.method, outcome.cause)
        job.last = outcome.cause
        with self._cond:
            if outcome.kind == RATELIMITED:
                again = self.governor.ratelimited(call, now, outcome.retry_after_s)
                if self._shared is not None:
                    self._shared_block(call, outcome.retry_after_s)
            elif outcome.kind == UNSURE and job.method in CREATES:
                job.unsure = True
                if job.reply is not None and job.conversation and self._may_look(job.conversation):
                    job.step = LOOK
                    call.key, call.limit = self._look_limit(job)
                elif self.settings.unsure_answer == "skip":
                    self.governor.done(call)
                    self._give_up(call, "unsure")
                    return
                again = self.governor.failed(call, now)  # the wait also gives Slack time to show the post
            else:
                job.unsure = job.unsure or outcome.kind == UNSURE
                again = self.governor.failed(call, now)
            if again:
                self._hold(job)
            else:
                self._give_up(call, "deadline")

    def _shared_block(self, call: Call, retry_after_s: float) -> None:
        assert self._shared is not None
        try:
            self._shared.block(call.key, call.limit, retry_after_s)
        except Exception:
            log.debug("shared rate limit unavailable", exc_info=True)

    def _seen(self, response: SlackResponse | None, error: BaseException | None) -> None:
        if response is not None:
            self.scopes.seen(response.headers)
        elif isinstance(error, SlackApiError):
            self.scopes.seen(error.response.headers)

    # -- looking before posting -----------------------------------------------------------------------------

    def _may_look(self, conversation: str) -> bool:
        return conversation not in self._unreadable and self.scopes.may_read(conversation)

    def _look_limit(self, job: Job) -> tuple[str, Limit]:
        method, _ = lookup_call(job.conversation or "", job.thread_ts, None)
        return limit_for(method, None)

    def _look(self, call: Call) -> None:
        """Read the conversation for the event's marked replies; settle the call if its post is there."""
        job: Job = call.job
        assert job.conversation is not None
        assert job.answering.event_id is not None
        method, params = lookup_call(job.conversation, job.thread_ts, job.answering.event_ts)
        found: dict[int, dict[str, Any]] = {}
        error: BaseException | None = None
        try:
            for _ in range(LOOK_PAGES):
                page = job.sender.send_once(method, {"params": dict(params)})
                self._seen(page, None)
                found.update(marked_replies(page.get("messages") or [], job.answering.event_id))
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
                params["cursor"] = cursor
        except Exception as e:
            error = e
            self._seen(None, e)
        outcome = judge(error)
        now = self._clock()
        if outcome.kind == OK:
            job.answering.looked(job.conversation, job.thread_ts, found)
            self.metrics.looked("found" if job.reply in found else "not_found")
            if job.reply in found:
                with self._cond:
                    self.governor.done(call)
                self._found(job, found[job.reply])
                return
        elif outcome.kind == FINAL:  # not allowed to read here (missing_scope, not_in_channel, …)
            self.metrics.looked("unavailable")
            if job.conversation not in self._unreadable:
                self._unreadable.add(job.conversation)
                log.warning(
                    "cannot read %s to look for answers already given (%s): answers there are not checked "
                    "before being posted again",
                    job.conversation,
                    outcome.cause,
                )
            if job.unsure and self.settings.unsure_answer == "skip":
                with self._cond:
                    self.governor.done(call)
                    self._give_up(call, "unsure")
                return
        else:  # Slack busy or unreachable: look again later
            with self._cond:
                again = (
                    self.governor.ratelimited(call, now, outcome.retry_after_s)
                    if outcome.kind == RATELIMITED
                    else self.governor.failed(call, now)
                )
                if not again:
                    self._give_up(call, "deadline")
            return
        job.step = SEND  # not there, or not readable: post it
        with self._cond:
            call.key, call.limit = job.post_key, job.post_limit
            if not self.governor.again(call, now):
                self._give_up(call, "deadline")

    def _found(self, job: Job, message: dict[str, Any]) -> SlackResponse:
        """The post is already in the conversation: settle with it, post nothing."""
        data = {"ok": True, "channel": job.conversation, "ts": message.get("ts"), "message": message}
        response = settled(job.sender, f"{getattr(job.sender, 'base_url', '')}{job.method}", job.kwargs, data)
        log.info(
            "answer %d to event %s is already in %s (ts %s): not posted again",
            job.reply,
            job.answering.event_id,
            job.conversation,
            message.get("ts"),
            extra={"event_id": job.answering.event_id, "method": job.method},
        )
        job.future.set_result(response)
        self._release(job)
        return response

    # -- endings --------------------------------------------------------------------------------------------

    def _give_up(self, call: Call, reason: str) -> None:
        """Under the lock, the call already out of the governor: say so once, loudly, and settle it."""
        job: Job = call.job
        waited = self._clock() - job.submitted_at
        minutes = self.settings.reply_deadline_s / 60
        why = {
            "deadline": f"NONSTOP_REPLY_DEADLINE ({minutes:g} min) would pass before its next chance",
            "unsure": "it may have reached Slack and the bot cannot look (NONSTOP_UNSURE_ANSWER=skip)",
            "refused": "the answer path failed on it",
        }.get(reason, reason)
        log.error(
            "gave up an answer to event %s: %s in %s after %d tries over %.1f s (last: %s): %s",
            job.answering.event_id or "-",
            job.method,
            job.conversation or "-",
            call.tries,
            waited,
            job.last or "-",
            why,
            extra={"event_id": job.answering.event_id, "method": job.method},
        )
        self.metrics.gave_up(job.method, reason)
        self.metrics.waited(job.method, waited)
        job.future.set_exception(NotDelivered(job.method, reason, why))
        self._release(job)

    def _refused(self, job: Job, outcome: Outcome) -> None:
        log.error(
            "Slack refused an answer to event %s: %s in %s: %s (after it had waited %.1f s)",
            job.answering.event_id or "-",
            job.method,
            job.conversation or "-",
            outcome.cause,
            self._clock() - job.submitted_at,
            extra={"event_id": job.answering.event_id, "method": job.method},
        )
        self.metrics.gave_up(job.method, "refused")

    # -- the bot's own calls --------------------------------------------------------------------------------

    def _direct(self, sender: Sender, method: str, kwargs: dict[str, Any]) -> SlackResponse:
        key, limit = limit_for(method, _param(kwargs, "channel"))
        while True:
            now = self._clock()
            with self._cond:
                bucket = self.governor.bucket(key, limit)
                ready = bucket.ready_at(now)
                if ready <= now:
                    bucket.take(now)
                    break
            time.sleep(min(ready - now, self.settings.reply_deadline_s))
        try:
            response = sender.send_once(method, kwargs)
        except SlackApiError as e:
            self._seen(None, e)
            outcome = judge(e)
            if outcome.kind == RATELIMITED:
                with self._cond:
                    self.governor.bucket(key, limit).ratelimited(self._clock(), outcome.retry_after_s)
            raise
        self._seen(response, None)
        return response

    # -- stopping -------------------------------------------------------------------------------------------

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait (bounded) until no call waits or is being tried; True if so. For a drain."""
        with self._cond:
            return self._cond.wait_for(lambda: self.governor.waiting == 0 and self._trying == 0, timeout_s)

    def close(self) -> None:
        """Stop the scheduler and the senders; calls still waiting are left unsettled (their events stay
        unfinished in the ledger, and run again at the next start)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            pool, thread = self._pool, self._thread
        if thread is not None:
            thread.join(5)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
