"""Slack's Web API rate limits, as the governor models them: which bucket a call draws from, and its size.

Slack limits each method "per app per workspace" [DOC: docs.slack.dev/apis/web-api/rate-limits], by tier:
Tier 1 allows 1+ calls a minute, Tier 2 20+, Tier 3 50+, Tier 4 100+, each with some bursts tolerated.
`chat.postMessage` is special: about one message per second per channel, short bursts allowed, with a
workspace-wide limit beside it [DOC, same page]. Neither the burst sizes nor the workspace-wide number are
published, so they are inferences here, corrected by every 429 (see `nonstop.outbound.governor`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POST_MESSAGE", "TIERS", "Limit", "limit_for", "tier_of"]


@dataclass(frozen=True)
class Limit:
    """A token bucket: `per_s` calls a second sustained, `burst` at once from a full bucket."""

    per_s: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_s <= 0 or self.burst < 1:
            raise ValueError("a limit needs a positive rate and room for at least one call")


def _tier(per_minute: float) -> Limit:
    # Slack's numbers are floors ("50+ per minute"). A bucket a quarter of a minute's quota deep lets a
    # burst through at once and keeps any minute within 1.25 x the floor [INF: the "+" leaves room for it].
    return Limit(per_minute / 60.0, max(2.0, per_minute // 4))


TIERS: dict[int, Limit] = {1: _tier(1), 2: _tier(20), 3: _tier(50), 4: _tier(100)}

POST_MESSAGE = Limit(per_s=1.0, burst=4.0)
"""chat.postMessage, per channel: 1 a second [DOC]; a burst of 4 [INF: "short bursts >1 allowed"]."""

METHOD_TIERS: dict[str, int] = {
    # [DOC] checked on the method's reference page: conversations.history / conversations.replies (Tier 3 for
    # internal and Marketplace apps; 1 a minute for new commercially distributed non-Marketplace apps, which a
    # 429 teaches the governor), views.publish (Tier 4).
    "conversations.history": 3,
    "conversations.replies": 3,
    "views.publish": 4,
    # [INF] as the method reference pages listed them when last read; a 429 corrects any that changed.
    "users.conversations": 3,
    "conversations.info": 3,
    "chat.update": 3,
    "chat.delete": 3,
    "reactions.add": 3,
    "reactions.remove": 2,
    "chat.postEphemeral": 4,
    "chat.getPermalink": 4,
    "users.info": 4,
    "views.open": 4,
    "views.update": 4,
    "views.push": 4,
    "auth.test": 4,
    "apps.connections.open": 1,
}
DEFAULT_TIER = 2
"""An unknown method: "Most methods allow at least 20 requests per minute" [DOC]."""


def tier_of(method: str) -> int:
    return METHOD_TIERS.get(method, DEFAULT_TIER)


def limit_for(method: str, channel: str | None) -> tuple[str, Limit]:
    """(bucket key, limit) for one call of `method`: chat.postMessage per channel, any other method by tier."""
    if method == "chat.postMessage" and channel:
        return f"chat.postMessage:{channel}", POST_MESSAGE
    return method, TIERS[tier_of(method)]
