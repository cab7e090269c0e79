"""What the sandbox observed: plain dataclasses handed out as snapshots to test threads."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple


@dataclass
class ApiCall:
    """One HTTP request to the Web API (or to a response_url, with method "response_url")."""

    id: int
    method: str
    path: str
    token: str | None
    params: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() when the request was read
    status: int | None = None  # None while the request is still being answered, or when it was cut (`fault`)
    response: Any = None  # parsed JSON body (dict) or text; None when the connection was cut
    response_headers: dict[str, str] | None = None  # beyond Content-Type/Length: Retry-After, x-oauth-scopes
    answered_at: float | None = None
    # What Slack did, whatever the answer says: the method took effect (a message posted, a view published).
    # True for every ok answer, and for a call whose answer a fault replaced after the fact.
    took_effect: bool = False
    # The injected bad moment this call met, if any: "ratelimited" (a rate limit or a ratelimited outage),
    # "http_503", "internal_error", "fatal_error", "cut" (sandbox.faults.FAILURE_MODES), or an outage mode.
    fault: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.response, dict) and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return self.response.get("error") if isinstance(self.response, dict) else None

    def snapshot(self) -> ApiCall:
        return replace(self)


@dataclass
class ConnectionInfo:
    """One TCP connection to the Socket Mode port."""

    id: str
    opened_at: float
    peer: str = ""
    state: str = "handshaking"  # handshaking|stalled|open|live|draining|silent|closed
    ticket: str | None = None
    upgraded_at: float | None = None
    hello_at: float | None = None
    closed_at: float | None = None
    close_how: str | None = None  # client_closed|client_close <code>|client_reset|reset|server_close <code>|dropped...
    disconnect_reason: str | None = None
    disconnect_at: float | None = None
    silenced_at: float | None = None
    envelopes_sent: int = 0
    acks_received: int = 0
    pings_received: int = 0
    pongs_received: int = 0
    other_messages: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """Hello sent, no disconnect sent, not closed: "Slack" routes envelopes here."""
        return self.state in ("live", "silent")

    def snapshot(self) -> ConnectionInfo:
        return replace(self, other_messages=list(self.other_messages))


class Attempt(NamedTuple):
    envelope_id: str
    connection_id: str | None  # None: not sent (yet): held for a routable connection, or none came in time
    sent_at: float  # written to the connection; for an attempt never sent, when it began
    retry_attempt: int
    started_at: float = 0.0  # when "Slack" began the attempt: sent_at - started_at is the time it was held


@dataclass(frozen=True)
class Delivery:
    """Handle returned when a user acts (mention, slash command, interaction)."""

    key: str  # unique per logical delivery
    kind: str  # events_api|slash_commands|interactive
    event_id: str | None
    ts: str | None
    channel: str | None
    user: str | None
    text: str | None
    thread_ts: str | None
    envelope_id: str | None  # of the first attempt (sent at once, or held until a connection is routable)
    response_url: str | None = None
    trigger_id: str | None = None


@dataclass
class DeliveryRecord:
    key: str
    kind: str
    event_id: str | None
    envelope: dict[str, Any]  # the first attempt's envelope
    attempts: list[Attempt] = field(default_factory=list)
    acked_at: float | None = None
    ack_envelope_id: str | None = None
    ack_connection_id: str | None = None
    ack_payload: dict[str, Any] | None = None
    acks_lost: int = 0
    duplicate_acks: int = 0
    outcome: str = "pending"  # pending|acked|timeout|exhausted|dispatch_failed|dropped (an incident)
    finished_at: float | None = None

    def snapshot(self) -> DeliveryRecord:
        return replace(self, attempts=list(self.attempts))


@dataclass(frozen=True)
class Ack:
    envelope_id: str
    connection_id: str
    payload: dict[str, Any] | None  # None when the client sent no payload or {}
    latency_s: float  # from sending the acked attempt to receiving the ack
    retry_attempt: int
    late: bool  # arrived after a slash command / interaction had already timed out
