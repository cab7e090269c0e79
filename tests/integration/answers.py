"""Reading the bot's answers back from the sandbox, cheaply enough to poll for thousands of mentions."""

from __future__ import annotations

from collections import Counter

from sandbox import Sandbox
from sandbox.records import Delivery


def replies(sb: Sandbox, ds: list[Delivery]) -> dict[str, int]:
    """Replies per delivery, from one read of the bot's messages."""
    per_thread = Counter(c.params.get("thread_ts") for c in sb.bot_messages())
    return {d.key: per_thread[d.ts] for d in ds}


def every_one_answered(sb: Sandbox, ds: list[Delivery], timeout: float = 60) -> dict[str, int]:
    """Wait until every delivery has at least one reply; return the replies per delivery."""
    sb.wait_until(lambda: all(n >= 1 for n in replies(sb, ds).values()), timeout=timeout, what="every one answered")
    return replies(sb, ds)
