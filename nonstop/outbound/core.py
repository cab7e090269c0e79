"""What happens to one Web API call between its tries: shared by the thread driver and the asyncio driver.

`OutboundCore` wraps the governor with everything a call's life needs that is not I/O: marking a post
with what it answers, its lane and order, what a try's outcome means for it (`nonstop.policy.judge`),
what a lookup found, giving up loudly, the tracker it holds, the metrics. It never sends, sleeps or waits:
the drivers (`nonstop.outbound.sync`, `nonstop.outbound.aio`) do, and call it under their lock (threads)
or on their loop (asyncio).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from nonstop.config.settings import OutboundSettings
from nonstop.net import network
from nonstop.net.retry import CREATES, FINAL, OK, RATELIMITED, SETTLED_BY, UNSURE, Outcome, Schedule, judge
from nonstop.outbound.answering import Answering
from nonstop.outbound.governor import Call, Due, Governor
from nonstop.outbound.limits import Limit, limit_for
from nonstop.outbound.marks import lookup_call, mark, marked_replies
from nonstop.outbound.metrics import OutboundMetrics
from nonstop.outbound.pending import NotDelivered, settled
from nonstop.outbound.scopes import Scopes

__all__ = ["ANSWER_METHODS", "LOOK", "SEND", "Job", "OutboundCore", "lane_of", "param"]

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

SEND, LOOK = "send", "look"
SETTLED, WAITING = "settled", "waiting"

_lanes = itertools.count()


def param(kwargs: dict[str, Any], name: str) -> str | None:
    """A string argument of an `api_call`, wherever the SDK put it (json, params or data)."""
    for part in ("json", "params", "data"):
        body = kwargs.get(part)
        if isinstance(body, dict) and isinstance(body.get(name), str) and body[name]:
            return body[name]
    return None


def lane_of(method: str, kwargs: dict[str, Any], conversation: str | None, thread_ts: str | None) -> str:
    """Where a call must keep its order: a conversation as people see it. A threaded reply is seen in its
    thread (unless broadcast to the channel too), so replies to different threads need not wait for each
    other; they still share the channel's rate limit, and calls waiting on one bucket leave oldest event first.
    A call that says nothing in a conversation has a lane of its own."""
    if not conversation or method not in ANSWER_METHODS:
        return f"{method}#{next(_lanes)}"
    broadcast = any(
        isinstance(kwargs.get(p), dict) and kwargs[p].get("reply_broadcast") for p in ("json", "params", "data")
    )
    return f"{conversation}/{thread_ts}" if thread_ts and not broadcast else conversation


@dataclass(eq=False)
class Job:
    """One call and its state between tries. `response`/`error`: how it settled (when `settled`)."""

    sender: Any
    method: str
    kwargs: dict[str, Any]
    answering: Answering
    conversation: str | None
    thread_ts: str | None
    reply: int | None  # its place among the event's posts, when it is a marked post
    submitted_at: float
    post_key: str
    post_limit: Limit
    call: Call | None = None
    step: str = SEND
    pending: bool = False  # returned to the caller before it settled
    held: bool = False  # holds the event's tracker
    unsure: bool = False  # an earlier try may have been delivered
    last: str = ""  # the last failure, for the log line if it is given up
    settled: bool = False
    response: SlackResponse | None = None
    error: BaseException | None = None

    @property
    def api_url(self) -> str:
        return f"{getattr(self.sender, 'base_url', '')}{self.method}"

    def try_kwargs(self) -> dict[str, Any]:
        """The call's arguments for one try (the SDK adds to the dicts it is given)."""
        return {k: dict(v) if isinstance(v, dict) else v for k, v in self.kwargs.items()}

    def read_page(self, page: SlackResponse, messages: list[Any], params: dict[str, Any]) -> bool:
        """Keep a lookup page's messages; True if another page follows (then `params` asks for it)."""
        messages.extend(page.get("messages") or [])
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if cursor:
            params["cursor"] = cursor
        return bool(cursor)

    def lookup(self) -> tuple[str, dict[str, Any]]:
        """(method, params) of the look for this post in its conversation."""
        assert self.conversation is not None
        return lookup_call(self.conversation, self.thread_ts, self.answering.event_ts)


class OutboundCore:
    """The governor and a call's life around it. Not thread-safe: the drivers serialise every call into it.

    Args:
        settings: the reply deadline and the choice for unsure posts.
        schedule: the waits between tries after a passing failure.
        metrics: where to count.
    """

    def __init__(self, settings: OutboundSettings, schedule: Schedule | None, metrics: OutboundMetrics) -> None:
        self.settings = settings
        self.governor = Governor(schedule=schedule)
        self.scopes = Scopes()
        self.metrics = metrics
        self.unreadable: set[str] = set()  # conversations Slack would not let the bot read

    # -- a new call -------------------------------------------------------------------------------------

    def prepare(self, sender: Any, method: str, kwargs: dict[str, Any], answering: Answering, now: float) -> Job:
        """The call as a job with its place in the governor (not submitted yet). A post that an earlier run of
        its event already made, found by an earlier lookup, comes back settled."""
        conversation, thread_ts = param(kwargs, "channel"), param(kwargs, "thread_ts")
        reply = None
        if method == "chat.postMessage" and answering.event_id:
            index = answering.next_reply()
            reply = index if mark(kwargs, answering.event_id, index, answering.message_ts) else None
        post_key, post_limit = limit_for(method, conversation)
        job = Job(sender, method, kwargs, answering, conversation, thread_ts, reply, now, post_key, post_limit)
        lane = lane_of(method, kwargs, conversation, thread_ts)
        deadline = now + self.settings.reply_deadline_s
        job.call = Call(method, lane, (answering.rank, now), deadline, post_key, post_limit, job=job)
        if reply is not None and answering.replayed and conversation:
            known = answering.known(conversation, thread_ts)
            if known is not None and reply in known:  # an earlier run's post, already found
                self.found(job, known[reply])
            elif known is None and self.may_look(conversation):
                self._to_look(job)
        return job

    def submit(self, job: Job, now: float) -> bool:
        """True: send it now (`job.step` is SEND). False: it waits in the governor."""
        assert job.call is not None
        if job.step == SEND:
            return self.governor.submit(job.call, now)
        self.governor.queue(job.call)  # it looks in the conversation first: a sender does that
        return False

    def due(self, now: float) -> Due:
        return self.governor.due(now)

    @property
    def waiting(self) -> int:
        return self.governor.waiting

    # -- after a try --------------------------------------------------------------------------------------

    def judge(self, job: Job, error: BaseException | None) -> Outcome:
        if error is not None and network.current().problem(error, getattr(job.sender, "base_url", "")) is not None:
            return Outcome(FINAL, "network")  # a certificate or a proxy login: retrying cannot fix it
        outcome = judge(error)
        if outcome.kind == FINAL and job.unsure and SETTLED_BY.get(job.method) == outcome.cause:
            return Outcome(OK)  # the earlier, unsure try was delivered
        return outcome

    def after_try(self, job: Job, response: SlackResponse | None, error: BaseException | None, now: float) -> str:
        """What one try of the post (or call) means: SETTLED (delivered or refused: `job.response`/`job.error`)
        or WAITING (back in the governor, to look first or to try again; or given up: then SETTLED)."""
        call = job.call
        assert call is not None
        self.seen(response, error)
        outcome = self.judge(job, error)
        if outcome.kind in (OK, FINAL):
            self.governor.done(call)
            self.metrics.waited(job.method, now - job.submitted_at)
            if outcome.kind == OK:
                if response is None:  # settled by a repeated try's error (SETTLED_BY)
                    response = settled(job.sender, job.api_url, job.kwargs, {"ok": True})
                return self._settle(job, response, None)
            if job.pending:
                self._refused(job, outcome, now)
            return self._settle(job, None, error)
        self.metrics.retry(job.method, outcome.cause)
        job.last = outcome.cause
        if outcome.kind == RATELIMITED:
            return self._again(job, self.governor.ratelimited(call, now, outcome.retry_after_s), now)
        if outcome.kind == UNSURE and job.method in CREATES:
            job.unsure = True
            if job.reply is not None and job.conversation and self.may_look(job.conversation):
                self._to_look(job)
            elif self.settings.unsure_answer == "skip":
                self.governor.done(call)
                return self.give_up(job, "unsure", now)
        else:
            job.unsure = job.unsure or outcome.kind == UNSURE
        return self._again(job, self.governor.failed(call, now), now)  # the wait also lets Slack show the post

    # -- after a look ---------------------------------------------------------------------------------------

    def after_look(self, job: Job, messages: list[Any] | None, error: BaseException | None, now: float) -> str:
        """What a look in the conversation (`messages` read, or the `error` it met) means for the post."""
        call = job.call
        assert call is not None
        assert job.conversation is not None
        assert job.answering.event_id is not None
        self.seen(None, error)
        outcome = judge(error)
        if outcome.kind == OK:
            found = marked_replies(messages or [], job.answering.event_id, job.answering.message_ts)
            job.answering.looked(job.conversation, job.thread_ts, found)
            self.metrics.looked("found" if job.reply in found else "not_found")
            if job.reply in found:
                self.governor.done(call)
                return self.found(job, found[job.reply])
        elif outcome.kind == FINAL:  # not allowed to read here (missing_scope, not_in_channel, …)
            self.metrics.looked("unavailable")
            if job.conversation not in self.unreadable:
                self.unreadable.add(job.conversation)
                log.warning(
                    "cannot read %s to look for answers already given (%s): answers there are not checked "
                    "before being posted again",
                    job.conversation,
                    outcome.cause,
                )
            if job.unsure and self.settings.unsure_answer == "skip":
                self.governor.done(call)
                return self.give_up(job, "unsure", now)
        elif outcome.kind == RATELIMITED:  # Slack busy or unreachable: look again later
            return self._again(job, self.governor.ratelimited(call, now, outcome.retry_after_s), now)
        else:
            return self._again(job, self.governor.failed(call, now), now)
        job.step = SEND  # not there, or not readable: post it
        call.key, call.limit = job.post_key, job.post_limit
        return self._again(job, self.governor.again(call, now), now)

    def found(self, job: Job, message: dict[str, Any]) -> str:
        """The post is already in the conversation: settle with it, post nothing."""
        data = {"ok": True, "channel": job.conversation, "ts": message.get("ts"), "message": message}
        log.info(
            "answer %d to event %s is already in %s (ts %s): not posted again",
            job.reply,
            job.answering.event_id,
            job.conversation,
            message.get("ts"),
            extra={"event_id": job.answering.event_id, "method": job.method},
        )
        return self._settle(job, settled(job.sender, job.api_url, job.kwargs, data), None)

    def may_look(self, conversation: str) -> bool:
        return conversation not in self.unreadable and self.scopes.may_read(conversation)

    def seen(self, response: SlackResponse | None, error: BaseException | None) -> None:
        if response is not None:
            self.scopes.seen(response.headers)
        elif isinstance(error, SlackApiError):
            self.scopes.seen(getattr(error.response, "headers", None))

    # -- holding and ending ----------------------------------------------------------------------------------

    def hold(self, job: Job) -> None:
        """The call waits: its event is not finished until it settles."""
        tracker = job.answering.tracker
        if not job.held and tracker is not None:
            job.held = tracker.add()

    def give_up(self, job: Job, reason: str, now: float) -> str:
        """The call is out of the governor and will not be tried again: say so once, loudly, and settle it."""
        waited = now - job.submitted_at
        minutes = self.settings.reply_deadline_s / 60
        why = {
            "deadline": f"NONSTOP_REPLY_DEADLINE ({minutes:.3g} min) would pass before its next chance",
            "unsure": "it may have reached Slack and the bot cannot look (NONSTOP_UNSURE_ANSWER=skip)",
        }.get(reason, "the answer path failed on it")
        log.error(
            "gave up an answer to event %s: %s in %s after %d tries over %.1f s (last: %s): %s",
            job.answering.event_id or "-",
            job.method,
            job.conversation or "-",
            job.call.tries if job.call is not None else 0,
            waited,
            job.last or "-",
            why,
            extra={"event_id": job.answering.event_id, "method": job.method},
        )
        self.metrics.gave_up(job.method, reason)
        self.metrics.waited(job.method, waited)
        return self._settle(job, None, NotDelivered(job.method, reason, why))

    def _refused(self, job: Job, outcome: Outcome, now: float) -> None:
        log.error(
            "Slack refused an answer to event %s: %s in %s: %s (after it had waited %.1f s)",
            job.answering.event_id or "-",
            job.method,
            job.conversation or "-",
            outcome.cause,
            now - job.submitted_at,
            extra={"event_id": job.answering.event_id, "method": job.method},
        )
        self.metrics.gave_up(job.method, "refused")

    def _settle(self, job: Job, response: SlackResponse | None, error: BaseException | None) -> str:
        job.settled, job.response, job.error = True, response, error
        if job.held:
            job.held = False
            tracker = job.answering.tracker
            if tracker is not None:
                tracker.release()
        return SETTLED

    def _again(self, job: Job, queued: bool, now: float) -> str:
        if not queued:
            return self.give_up(job, "deadline", now)
        self.hold(job)
        return WAITING

    def _to_look(self, job: Job) -> None:
        assert job.call is not None
        job.step = LOOK
        method, _ = job.lookup()
        job.call.key, job.call.limit = limit_for(method, None)
