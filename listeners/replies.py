"""Everything Nonstop says, in one place: parsing a request and building the reply.

Both the `@Nonstop …` mention and the `/nonstop …` slash command go through `reply_for`, so the help
text, the hint, the pong and the status rendering exist exactly once. Builders are pure functions of
their inputs (a `Snapshot`, a timestamp), which keeps them cheap enough to run before a command's ack.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nonstop.humanize import human_duration
from nonstop.status import ClusterView, Snapshot
from nonstop.status.snapshot import CatchUpView

SUBCOMMANDS = ("ping", "status", "help")

_LEADING_MENTIONS = re.compile(r"^(?:\s*<@[UW][A-Z0-9]+(?:\|[^>]*)?>)+", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    """What to send: `text` is always set (notifications, screen readers); `blocks` when richer."""

    text: str
    blocks: list[dict[str, Any]] | None = None


def parse_subcommand(text: str | None) -> tuple[str, str]:
    """Split a request into (sub-command, rest), with leading bot mentions stripped.

    `"<@U0BOT0001|nonstop>  PING now"` → `("ping", "now")`; an empty request gives `("", "")`.
    """
    parts = _LEADING_MENTIONS.sub("", text or "", count=1).split(maxsplit=1)
    if not parts:
        return "", ""
    return parts[0].lower(), parts[1].strip() if len(parts) > 1 else ""


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack treats as control sequences (`<!here>`, links, entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rtt(rtt_ms: float | None) -> str:
    return "unknown" if rtt_ms is None else f"{rtt_ms:.0f} ms"


# -- help and hint -----------------------------------------------------------------------------

HELP_TEXT = (
    "*Nonstop* keeps this workspace's Socket Mode link alive and can tell you how it is doing.\n"
    "• `ping`: answers `pong` with the round trip, e.g. `@Nonstop ping` or `/nonstop ping`\n"
    "• `status`: connection health (uptime, reconnects and why, last drop), "
    "e.g. `@Nonstop status` or `/nonstop status`\n"
    "• `help`: this message, e.g. `@Nonstop help` or `/nonstop help`\n"
    "Mention replies go to the thread; `/nonstop` answers only you. My Home tab shows the same health, "
    "live, with a *Check connection* button."
)


def help_reply() -> Reply:
    return Reply(text=HELP_TEXT, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": HELP_TEXT}}])


def hint_reply(word: str) -> Reply:
    shown = escape_mrkdwn(word[:40])
    return Reply(
        text=f"I don't know `{shown}` yet. Try `help` (`@Nonstop help` or `/nonstop help`) to see what I can do."
    )


# -- ping ----------------------------------------------------------------------------------------


def event_delay_ms(event_ts: str | None, now: float) -> float | None:
    """Delay from an event's Slack timestamp ("1700000000.000100") to `now`, in ms, never negative."""
    if not event_ts:
        return None
    try:
        sent = float(event_ts)
    except ValueError:
        return None
    return max(0.0, (now - sent) * 1000.0)


LATE_AFTER_S = 60.0
"""An answer this late (or later) says so (issue 18: catch-up answers what Slack never delivered)."""


def late_words(seconds: float) -> str:
    """A lateness in words: "1 min", "3 min", "2 h", "2 h 5 min", "1 day 3 h"."""
    minutes = int(max(0.0, seconds) // 60)
    if minutes < 60:
        return f"{max(1, minutes)} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} day{'s' if days > 1 else ''}" + (f" {hours} h" if hours else "")


def late_note(late_s: float | None) -> str | None:
    """ "sorry, this reached me 3 min late" when the event is more than a minute late; else None."""
    if late_s is None or late_s <= LATE_AFTER_S:
        return None
    return f"sorry, this reached me {late_words(late_s)} late"


def pong_reply(*, now: float, rtt_ms: float | None, event_ts: str | None = None, late_s: float | None = None) -> Reply:
    note = late_note(late_s)
    parts = ["pong" if note is None else f"pong — {note}"]
    delay = event_delay_ms(event_ts, now)
    if delay is not None and note is None:  # late: the note says it better than a count of milliseconds
        parts.append(f"your message reached me in {delay:.0f} ms")
    if rtt_ms is not None:
        parts.append(f"WebSocket ping round trip {_rtt(rtt_ms)}")
    return Reply(text=" · ".join(parts))


# -- status --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusLines:
    """The status facts as (label, value) pairs, rendered as blocks and as plain text."""

    heading: str
    facts: list[tuple[str, str]]
    last_drop: str
    footer: str
    cluster: list[str] | None = None  # replicas on one Redis: a summary line, then one line per replica


def _cluster_lines(cluster: ClusterView, now: float) -> list[str]:
    summary = (
        f"{len(cluster.replicas)} replica(s) hold {cluster.total} of Slack's {cluster.budget} connections; "
        f"this one may hold {cluster.allowed}" + (" (standby)" if cluster.standby else "")
    )
    if not cluster.redis_reachable:
        summary += "; Redis unreachable: deduplicating in each replica until it is back"
    if cluster.ghost_connections:
        summary += f"; {cluster.ghost_connections} connection(s) held by another process with this app token"
    lines = [summary]
    for replica in cluster.replicas:
        lines.append(
            f"• {replica.name}{' (this one)' if replica.this_one else ''}: {replica.connections} connection(s), "
            f"up {human_duration(max(0.0, now - replica.started_at))}, {replica.events_handled} envelope(s) handled"
        )
    return lines


def _catch_up_line(view: CatchUpView, now: float) -> str:
    """Catch-up in words: whether it runs, how, its latest scan and what it recovered."""
    if view.mode == "off":
        return f"off ({view.reason})"
    how = {
        "polling": "polling the history every few seconds: no live connection",
        "standby": "another replica scans",
        "starting": "starting",
    }.get(view.mode, "on")
    last = "no scan yet" if view.last_scan_at is None else f"last scan {human_duration(now - view.last_scan_at)} ago"
    failed = f", {view.failed_scans} failed" if view.failed_scans else ""
    return f"{how} · {last}{failed} · {view.recovered} missed mention(s) recovered"


def _status_lines(snapshot: Snapshot) -> StatusLines:
    now = snapshot.now
    if snapshot.connected_since is None:
        connected = "not connected"
    else:
        connected = f"{_clock(snapshot.connected_since)} ({human_duration(now - snapshot.connected_since)} ago)"
    by_cause = sorted(snapshot.reconnects_by_cause.items(), key=lambda item: (-item[1], item[0]))
    reconnects = str(snapshot.reconnects)
    if by_cause:
        reconnects += " (" + ", ".join(f"{cause} {count}" for cause, count in by_cause) + ")"
    drop = snapshot.last_drop
    if drop is None:
        last_drop = "never"
    else:
        last_drop = (
            f"{human_duration(now - drop.at)} ago ({_clock(drop.at)}), {drop.cause}: {drop.explanation} "
            f"(that connection had lived {human_duration(drop.connection_age_s)})"
        )
    facts = [
        ("Uptime", human_duration(snapshot.uptime_s)),
        ("Connected since", connected),
        ("Live connections", f"{snapshot.live_connections} of {snapshot.target_connections}"),
        ("Reconnects", reconnects),
        ("Envelopes handled", str(snapshot.envelopes_handled)),
        ("Duplicates suppressed", str(snapshot.duplicates_suppressed)),
        ("WebSocket ping", _rtt(snapshot.last_rtt_ms)),
        ("State", snapshot.state_text),
    ]
    if snapshot.catch_up is not None:
        facts.append(("Catch-up", _catch_up_line(snapshot.catch_up, now)))
    return StatusLines(
        heading=f"Nonstop status: {snapshot.state_text}",
        facts=facts,
        last_drop=last_drop,
        footer=f"as of {_clock(now)}",
        cluster=_cluster_lines(snapshot.cluster, now) if snapshot.cluster is not None else None,
    )


def status_reply(snapshot: Snapshot) -> Reply:
    lines = _status_lines(snapshot)
    text = "\n".join(
        [
            f"*{escape_mrkdwn(lines.heading)}*",
            *(f"{label}: {escape_mrkdwn(value)}" for label, value in lines.facts),
            f"Last drop: {escape_mrkdwn(lines.last_drop)}",
            *(["*Cluster*", *(escape_mrkdwn(line) for line in lines.cluster)] if lines.cluster else []),
            lines.footer,
        ]
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape_mrkdwn(lines.heading)}*"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}*\n{escape_mrkdwn(value)}"} for label, value in lines.facts
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Last drop*\n{escape_mrkdwn(lines.last_drop)}"}},
    ]
    if lines.cluster:
        # A section's text holds 3000 characters: ten replicas' lines fit with room to spare.
        text = "*Cluster*\n" + "\n".join(escape_mrkdwn(line) for line in lines.cluster)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": lines.footer}]})
    return Reply(text=text, blocks=blocks)


# -- App Home --------------------------------------------------------------------------------------

CHECK_CONNECTION_ACTION = "check_connection"


@dataclass(frozen=True)
class ConnectionCheck:
    """What one click on "Check connection" measured."""

    at: float  # wall-clock time of the check
    web_api_ms: float | None  # auth.test round trip; None when it failed
    error: str | None  # why the Web API check failed
    rtt_ms: float | None  # the latest WebSocket ping round trip
    click_delay_ms: float | None  # from the click (action_ts) to the bot


def _check_line(check: ConnectionCheck) -> str:
    if check.error is None:
        parts = [f"Web API answered in {check.web_api_ms:.0f} ms (auth.test)"]
    else:
        parts = [f"Web API check failed: {check.error}"]
    parts.append(f"WebSocket ping round trip {_rtt(check.rtt_ms)}")
    if check.click_delay_ms is not None:
        parts.append(f"your click reached me in {check.click_delay_ms:.0f} ms")
    return f"{_clock(check.at)}: " + " · ".join(parts)


def home_view(snapshot: Snapshot, check: ConnectionCheck | None = None) -> dict[str, Any]:
    """The Home tab: the connection's health as of `snapshot`, a "Check connection" button, the last check."""
    lines = _status_lines(snapshot)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": lines.heading}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}*\n{escape_mrkdwn(value)}"} for label, value in lines.facts
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Last drop*\n{escape_mrkdwn(lines.last_drop)}"}},
        {
            "type": "actions",
            "block_id": "home_actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": CHECK_CONNECTION_ACTION,
                    "text": {"type": "plain_text", "text": "Check connection"},
                    "value": "check",
                }
            ],
        },
    ]
    if check is not None:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Last check*\n{escape_mrkdwn(_check_line(check))}"},
            }
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": lines.footer}]})
    return {"type": "home", "blocks": blocks}


def reply_thread_ts(event: dict[str, Any]) -> str | None:
    """The thread a reply to this event belongs in: the event's thread, or a new one under it."""
    return event.get("thread_ts") or event.get("ts")


# -- errors --------------------------------------------------------------------------------------


def error_ref(body: dict[str, Any]) -> str:
    """A reference the user can quote and we can grep for: the event_id, else a fresh short id."""
    event_id = body.get("event_id")
    if isinstance(event_id, str) and event_id:
        return event_id
    return "ERR" + uuid.uuid4().hex[:10].upper()


def sorry_reply(ref: str) -> Reply:
    return Reply(text=f"Sorry, something went wrong on my side — it has been logged (ref {escape_mrkdwn(ref)}).")


# -- dispatch ------------------------------------------------------------------------------------


def reply_for(
    text: str | None, snapshot: Snapshot, *, event_ts: str | None = None, late_s: float | None = None
) -> Reply:
    """The reply to a mention's or a slash command's text, given the link's health right now. `late_s`: how late
    the event reached the bot (Bolt's `context["nonstop_late_s"]`); past a minute, the reply says sorry."""
    subcommand, _ = parse_subcommand(text)
    if subcommand == "ping":
        return pong_reply(now=snapshot.now, rtt_ms=snapshot.last_rtt_ms, event_ts=event_ts, late_s=late_s)
    if subcommand in ("", "help"):
        reply = help_reply()
    elif subcommand == "status":
        reply = status_reply(snapshot)
    else:
        reply = hint_reply(subcommand)
    return _with_late_note(reply, late_note(late_s))


def _with_late_note(reply: Reply, note: str | None) -> Reply:
    """`reply` opening with the note ("Sorry, this reached me 3 min late."), in its text and its blocks."""
    if note is None:
        return reply
    sentence = f"{note[0].upper()}{note[1:]}."
    blocks = reply.blocks
    if blocks is not None:
        blocks = [{"type": "context", "elements": [{"type": "mrkdwn", "text": sentence}]}, *blocks]
    return Reply(text=f"{sentence} {reply.text}", blocks=blocks)
