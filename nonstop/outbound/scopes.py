"""The bot token's scopes, detected (never configured): Slack names them in every Web API answer.

Every answer carries the token's scopes in its `x-oauth-scopes` header [DOC: notes §10; EXP: the sandbox
sends it lowercase and Bolt reads it so]. Reading a conversation's history needs the `*:history` scope of
its kind [DOC: conversations.history and conversations.replies, "Scopes" for bot tokens]: `channels:history`
for public channels, `groups:history` for private ones, `im:history` and `mpim:history` for direct messages.
A conversation id does not say for sure which kind it is (private channels made since 2020 start with C as
well [INF]), so `may_read` answers "worth a try": a lookup that Slack refuses (`missing_scope`,
`not_in_channel`) is remembered per conversation by the caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

__all__ = ["HISTORY_SCOPES", "Scopes", "say_history"]

log = logging.getLogger("nonstop.outbound")

HISTORY_SCOPES = ("channels:history", "groups:history", "im:history", "mpim:history")


def _kinds(conversation: str) -> tuple[str, ...]:
    """The history scopes that may cover `conversation`, by its id's first letter."""
    if conversation.startswith("D"):
        return ("im:history",)
    if conversation.startswith("G"):
        return ("groups:history", "mpim:history")
    return ("channels:history", "groups:history")


class Scopes:
    """What the token may do, as the latest answer from Slack said. Thread-safe; `seen()` is cheap enough to
    call on every answer (it compares one string)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._header: str | None = None
        self._granted: frozenset[str] | None = None
        self._watchers: list[Callable[[frozenset[str]], None]] = []

    def seen(self, headers: Mapping[str, object] | None) -> None:
        """Note the scopes named in an answer's headers (any case); answers without the header change nothing."""
        if not headers:
            return
        value = next((v for k, v in headers.items() if k.lower() == "x-oauth-scopes"), None)
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if not isinstance(value, str) or value == self._header:
            return
        granted = frozenset(s.strip() for s in value.split(",") if s.strip())
        with self._lock:
            changed = granted != self._granted
            self._header, self._granted = value, granted
            watchers = list(self._watchers)
        if changed:
            for watcher in watchers:
                watcher(granted)

    def on_change(self, watcher: Callable[[frozenset[str]], None]) -> None:
        """Call `watcher(granted)` whenever the granted scopes change (first seen included)."""
        with self._lock:
            self._watchers.append(watcher)

    @property
    def granted(self) -> frozenset[str] | None:
        """The scopes of the latest answer, or None before any answer named them."""
        return self._granted

    @property
    def history(self) -> frozenset[str]:
        """The history scopes granted (empty: the bot cannot look in any conversation)."""
        return (self._granted or frozenset()) & frozenset(HISTORY_SCOPES)

    def may_read(self, conversation: str) -> bool:
        """Whether looking in `conversation`'s history is worth a try with the scopes granted."""
        granted = self._granted or frozenset()
        return any(scope in granted for scope in _kinds(conversation))


def say_history(scopes: Scopes, unsure_answer: str) -> None:
    """One line on what the bot does with an answer that may already be in Slack, given the scopes granted (said
    whenever they change: at the first answer from Slack, and after a reinstall)."""
    history = sorted(scopes.history)
    if history:
        log.info(
            "history scopes granted (%s): an answer that may already be in Slack (an unsure post, an event run "
            "again after a crash) is looked up in its conversation before it is posted",
            ", ".join(history),
        )
    else:
        log.info(
            "no history scopes: an answer that may already be in Slack cannot be checked, so it is %s "
            "(NONSTOP_UNSURE_ANSWER=%s); add channels:history (and groups:, im:, mpim:history) to look first",
            "posted again (maybe twice, never lost)" if unsure_answer == "repost" else "not posted again (maybe never)",
            unsure_answer,
        )
