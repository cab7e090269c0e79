"""`Sandbox`: a local Slack (Web API + Socket Mode) running on a background event-loop thread."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.config import BOT_USER_ID, GENERAL_CHANNEL
from sandbox.records import Ack, ApiCall, ConnectionInfo, Delivery, DeliveryRecord
from sandbox.switches import Switches
from sandbox.users import UserActions

__all__ = ["Sandbox"]


class Sandbox(UserActions, Switches):
    """A faithful local Slack with fault injection. Every public method is thread-safe.

    The parts: `sandbox.core.SandboxBase` (state, start/stop), `sandbox.users.UserActions` (what users do),
    `sandbox.switches.Switches` (faults and rules); here, what was observed and how to wait for it.
    """

    # --- inspection ----------------------------------------------------------------------------
    def deliveries(self) -> list[DeliveryRecord]:
        with self._recorder.lock:
            return [d.snapshot() for d in self._recorder.deliveries.values()]

    def delivery(self, d: Delivery | str) -> DeliveryRecord:
        key = d if isinstance(d, str) else d.key
        with self._recorder.lock:
            return self._recorder.deliveries[key].snapshot()

    def bot_messages(self) -> list[ApiCall]:
        """chat.postMessage calls that posted (the bot's visible replies): every ok one, and those whose
        answer an injected fault lost after posting (`fail_calls`); `ApiCall.fault` tells them apart."""
        return [c for c in self.calls("chat.postMessage") if c.took_effect]

    def replies_to(self, d: Delivery) -> list[ApiCall]:
        """The bot's messages in the thread of the delivered message (thread_ts == its ts)."""
        return [c for c in self.bot_messages() if d.ts is not None and c.params.get("thread_ts") == d.ts]

    def handled_counts(self) -> dict[str, int]:
        """event_id -> number of bot replies threaded under that event's message."""
        replies: dict[str, int] = {}
        for call in self.bot_messages():
            thread_ts = call.params.get("thread_ts")
            if thread_ts:
                replies[str(thread_ts)] = replies.get(str(thread_ts), 0) + 1
        with self._recorder.lock:
            events = [
                (r.event_id, r.envelope["payload"]["event"].get("ts"))
                for r in self._recorder.deliveries.values()
                if r.kind == "events_api" and r.event_id
            ]
        return {event_id: replies.get(ts, 0) for event_id, ts in events}

    def history(self, channel: str = GENERAL_CHANNEL) -> list[dict[str, Any]]:
        """Every message Slack holds in a conversation, oldest first, replies included, metadata whole:
        what the bot and its users wrote, whatever the Web API answered. [] for an unknown conversation."""

        def run() -> list[dict[str, Any]]:
            conv = self._webapi.history.conversations.get(channel)
            return copy.deepcopy(conv.messages) if conv is not None else []

        return self._call(run)

    def conversations(self) -> list[dict[str, Any]]:
        """Every conversation of the workspace (as users.conversations lists them, with `kind`, `member`)."""
        return self._call(
            lambda: [
                {**c.summary(), "kind": c.kind, "member": c.member} for c in self._webapi.history.conversations.values()
            ]
        )

    def subscribe(self, callback: Callable[[ApiCall], None]) -> Callable[[], None]:
        """callback(call) for every answered Web API call (on the sandbox thread). Returns unsubscribe."""
        self._recorder.add_call_listener(callback)
        return lambda: self._recorder.remove_call_listener(callback)

    # --- waiting -------------------------------------------------------------------------------
    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
        return self._recorder.wait(predicate, timeout, lambda: what)

    def wait_for_message(
        self,
        text_contains: str | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
        timeout: float = 10,
        after: float | None = None,
    ) -> ApiCall:
        """The first chat.postMessage by the bot matching all given filters (`after`: monotonic time)."""

        def matches(c: ApiCall) -> bool:
            return (
                (text_contains is None or text_contains in str(c.params.get("text", "")))
                and (channel is None or c.params.get("channel") == channel)
                and (thread_ts is None or c.params.get("thread_ts") == thread_ts)
                and (after is None or c.at >= after)
            )

        def check() -> ApiCall | None:
            return next((c for c in self.bot_messages() if matches(c)), None)

        def describe() -> str:
            seen = [(c.params.get("channel"), c.params.get("thread_ts"), c.params.get("text")) for c in self.calls()
                    if c.method == "chat.postMessage"]  # fmt: skip
            return (
                f"chat.postMessage text_contains={text_contains!r} channel={channel!r} thread_ts={thread_ts!r}; "
                f"seen postMessage (channel, thread_ts, text): {seen[-10:]}; methods called: {self._methods_seen()}"
            )

        return self._recorder.wait(check, timeout, describe)

    def wait_for_ack(self, d: Delivery, timeout: float = 10) -> Ack:
        def check() -> Ack | None:
            r = self.delivery(d)
            if r.acked_at is None:
                return None
            attempt = next(a for a in r.attempts if a.envelope_id == r.ack_envelope_id)
            return Ack(
                envelope_id=r.ack_envelope_id or "",
                connection_id=r.ack_connection_id or "",
                payload=r.ack_payload,
                latency_s=r.acked_at - attempt.sent_at,
                retry_attempt=attempt.retry_attempt,
                late=r.outcome == "timeout",
            )

        def describe() -> str:
            r = self.delivery(d)
            return (
                f"an ack for {d.kind} {d.key}: outcome={r.outcome} attempts={r.attempts} acks_lost={r.acks_lost}; "
                f"connections: {self._conns_summary()}"
            )

        return self._recorder.wait(check, timeout, describe)

    def wait_for_outcome(
        self, d: Delivery, outcomes: Iterable[str] = ("acked",), timeout: float = 10
    ) -> DeliveryRecord:
        wanted = tuple(outcomes)

        def check() -> DeliveryRecord | None:
            r = self.delivery(d)
            return r if r.outcome in wanted else None

        return self._recorder.wait(check, timeout, lambda: f"{d.key} outcome in {wanted}: now {self.delivery(d)}")

    def wait_for_connections(self, n: int, timeout: float = 10) -> list[ConnectionInfo]:
        def check() -> list[ConnectionInfo] | None:
            live = self.connections(live_only=True)
            return live if len(live) >= n else None

        return self._recorder.wait(
            check, timeout, lambda: f"{n} live connection(s); connections: {self._conns_summary()}; "
            f"methods called: {self._methods_seen()}"
        )  # fmt: skip

    def bot_user_id(self) -> str:
        return BOT_USER_ID

    def now(self) -> float:
        return time.monotonic()
