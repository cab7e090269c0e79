"""Slack's Web API rate limits: `chat.postMessage` per channel, and the method tiers.

The model, with its sources (docs/sandbox-model.md has the reasoning):
- `chat.postMessage`: "generally allow[s] an app to post 1 message per second to a specific channel",
  with bursts [DOC: the method's page and the rate-limits page]. A token bucket per channel: it refills at
  `post_per_channel_per_s` and holds `post_burst` posts [INF: Slack publishes no burst size; 4 by default].
  The workspace-wide posting limit ("several hundred messages per minute" [DOC]) is not modelled.
- Tiers: Tier 1 1+ per minute, Tier 2 20+, Tier 3 50+, Tier 4 100+, "per API method per app per
  workspace" [DOC]. Each (method) gets a token bucket that holds one minute's quota and refills at that
  quota per minute [INF]: a client that keeps to N calls in any minute is never refused, and an idle
  client may spend a minute's quota at once (the documented "bursts").
- Past a limit: HTTP 429, `Retry-After: <whole seconds>`, body `{"ok": false, "error": "ratelimited"}`
  [DOC]; the call does nothing. Retry-After is the wait until the bucket holds one call again, rounded
  up to whole seconds, at least 1 [INF].
- `apps.connections.open` (Tier 1 [DOC]) is left out on purpose: its 429s are injected by hand
  (`outage(mode="ratelimited")`), so that reconnect-heavy tests and benchmarks measure the bot, not the
  limit. `auth.test` allows "hundreds of requests per minute" [DOC] and is not limited either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["POSTING", "TIERS", "RateLimits", "TokenBucket"]

POSTING = "chat.postMessage"  # the special limit: per channel

# Each method's tier, from its page in Slack's method reference [DOC]:
TIERS: dict[str, int] = {
    "chat.update": 3,  # api.slack.com/methods/chat.update: Tier 3
    "chat.postEphemeral": 4,  # api.slack.com/methods/chat.postEphemeral: Tier 4
    "views.publish": 4,  # api.slack.com/methods/views.publish: Tier 4
    "users.conversations": 3,  # api.slack.com/methods/users.conversations: Tier 3
    "conversations.history": 3,  # docs.slack.dev/reference/methods/conversations.history: Tier 3
    "conversations.replies": 3,  # docs.slack.dev/reference/methods/conversations.replies: Tier 3
}


@dataclass
class TokenBucket:
    """`capacity` calls at most, refilled continuously at `rate` calls per second."""

    capacity: float
    rate: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one call: 0.0 if allowed, else the seconds until one would be (nothing taken)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimits:
    """Decides, per call, whether Slack would answer 429. Runs on the sandbox's loop thread."""

    def __init__(
        self, *, on: bool, post_per_channel_per_s: float, post_burst: int, tier_per_minute: tuple[int, ...]
    ) -> None:
        self.on = on
        self.post_per_channel_per_s = post_per_channel_per_s
        self.post_burst = post_burst
        self.tier_per_minute = tier_per_minute
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._check(post_per_channel_per_s, post_burst, tier_per_minute)

    @staticmethod
    def _check(post_per_s: float, post_burst: int, tiers: tuple[int, ...]) -> None:
        if not post_per_s > 0:
            raise ValueError("post_per_channel_per_s must be above 0")
        if int(post_burst) < 1:
            raise ValueError("post_burst must be at least 1")
        if len(tiers) != 4 or any(int(n) < 1 for n in tiers):
            raise ValueError("tier_per_minute must be four calls-per-minute figures of at least 1 (tiers 1 to 4)")

    def configure(
        self,
        on: bool | None = None,
        post_per_channel_per_s: float | None = None,
        post_burst: int | None = None,
        tier_per_minute: tuple[int, ...] | list[int] | None = None,
    ) -> dict[str, Any]:
        """Change what is given (None keeps it); every bucket starts full again. Returns the settings."""
        rate = self.post_per_channel_per_s if post_per_channel_per_s is None else float(post_per_channel_per_s)
        burst = self.post_burst if post_burst is None else int(post_burst)
        tiers = self.tier_per_minute if tier_per_minute is None else tuple(int(n) for n in tier_per_minute)
        self._check(rate, burst, tiers)
        if on is not None:
            self.on = bool(on)
        self.post_per_channel_per_s, self.post_burst, self.tier_per_minute = rate, burst, tiers
        self._buckets.clear()
        return self.settings()

    def settings(self) -> dict[str, Any]:
        return {
            "on": self.on,
            "post_per_channel_per_s": self.post_per_channel_per_s,
            "post_burst": self.post_burst,
            "tier_per_minute": list(self.tier_per_minute),
            "tiers": dict(TIERS),
        }

    def retry_after(self, method: str, params: dict[str, Any], now: float) -> int | None:
        """None if Slack takes this call now (and it is counted), else the Retry-After in whole seconds."""
        if not self.on:
            return None
        if method == POSTING:
            key, capacity, rate = (method, str(params.get("channel", ""))), self.post_burst, self.post_per_channel_per_s
        elif method in TIERS:
            per_minute = self.tier_per_minute[TIERS[method] - 1]
            key, capacity, rate = (method, ""), per_minute, per_minute / 60.0
        else:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(float(capacity), rate, float(capacity), now)
        wait = bucket.take(now)
        return None if wait == 0.0 else max(1, math.ceil(round(wait, 3)))
