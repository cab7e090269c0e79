"""The event ledger: what was acked, what finished, and what must run again after a crash.

Every Events API envelope is *admitted* (recorded) before its ack leaves, and *finished* only when
every listener it started has returned. What was admitted and never finished (a crash, a SIGKILL, a
drain deadline) is handed back by `open()` on the next start and runs again; finished event ids are
remembered for `ttl_s`, so a retry from Slack after a restart is still recognised as a duplicate.

The guarantee, exactly: each event runs once while the process lives; at least once across a crash
(a listener cut off mid-way runs again); never zero, as long as the ledger's storage survives. A
replayed event that never finishes is given up after `MAX_RUNS` runs, loudly (a poison event must
not crash-loop the bot).

Commands and interactions are not recorded: Slack never redelivers them, and running one again
minutes later (after its user saw a timeout) would surprise more than help.

Beside the events, the ledger keeps one *high-water mark* per conversation: the newest message ts that a
catch-up scan of its history has fully handled (`marks`, `advance_marks`). A mark only moves forward, is
never pruned (one small row per conversation), and is shared by replicas on Redis.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

MAX_RUNS = 3
"""Runs of one event (the first included) after which an event that never finishes is given up."""


class LedgerError(Exception):
    """The ledger cannot be opened or written. The message is one line, safe to print."""


@dataclass(frozen=True)
class Entry:
    """One admitted event: its dedupe key, the envelope to run again, and how often it has started."""

    key: str  # see `nonstop.pipeline.envelopes.event_key`: "app_mention:<channel>:<ts>", "event:<id>", …
    envelope: dict[str, Any]
    runs: int = 0  # completed start-ups during which it was run and did not finish
    text: str | None = None  # the envelope as received, when the link has it: stored as is
    alias: str | None = None  # another key it may be on record under, written by an older version: also known

    def envelope_json(self) -> str:
        # Serialising again was most of an admission's time on the loop (docs/benchmark.md, ledger overhead).
        return self.text if self.text is not None else json.dumps(self.envelope, separators=(",", ":"))


@dataclass(frozen=True)
class Recovered:
    """What `open()` found from earlier runs of the process."""

    unfinished: list[Entry]  # to run again now (their `runs` already counts this start)
    given_up: list[Entry]  # ran MAX_RUNS times without finishing: marked done, not run again


class Ledger(ABC):
    """One small interface, one backend per storage (memory, SQLite; Redis, shared by replicas)."""

    url: str  # for log lines: never carries a password

    @abstractmethod
    async def open(self) -> Recovered:
        """Prepare storage; hand back what earlier runs left unfinished. Raises `LedgerError`."""

    @abstractmethod
    async def admit(self, entries: list[Entry]) -> list[bool]:
        """Record `entries` (one write for all); for each, True if it is new here (run it), False if the
        key is already known (pending or done: a duplicate). Raises `LedgerError`."""

    def admit_now(self, entries: list[Entry]) -> list[bool] | None:
        """`admit()` without leaving the caller's loop turn, for a backend whose write never waits (a local
        file, memory): the acks then leave in the same turn. None: this backend must be awaited."""
        return None

    @abstractmethod
    async def finish(self, keys: list[str]) -> None:
        """Mark `keys` done now (one write for all); they are remembered for `ttl_s`."""

    @abstractmethod
    async def prune(self) -> int:
        """Forget done entries older than `ttl_s`; return how many went."""

    @abstractmethod
    async def marks(self) -> dict[str, str]:
        """Conversation id -> the newest message ts a catch-up scan has fully handled there. Raises `LedgerError`."""

    @abstractmethod
    async def advance_marks(self, marks: dict[str, str]) -> None:
        """Move each conversation's mark to the ts given (one write for all), but only forward: a ts older than
        or equal to the stored one leaves it as it is, even when another replica wrote it meanwhile. Raises
        `ValueError` for a ts that is not a Slack timestamp (nothing is written), `LedgerError` when storage
        cannot be written."""

    @abstractmethod
    async def close(self) -> None:
        """Release storage. Pending entries stay for the next start."""

    @property
    @abstractmethod
    def durable(self) -> bool:
        """Whether pending entries survive the process (memory: no)."""


_TS = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,6}))?")


def ts_micros(ts: str) -> int:
    """A Slack message ts ("1700000000.000100") as an integer of microseconds, to compare exactly (a float has
    too few digits to tell 1700000000.000100 from .000101 reliably after arithmetic). Raises `ValueError`."""
    found = _TS.fullmatch(ts) if isinstance(ts, str) else None
    if found is None:
        raise ValueError(f"{ts!r} is not a Slack message ts (seconds.microseconds, like 1700000000.000100)")
    seconds, fraction = found.groups()
    return int(seconds) * 1_000_000 + int((fraction or "").ljust(6, "0"))


def checked_marks(marks: dict[str, str]) -> dict[str, tuple[str, int]]:
    """`marks` with each ts as (ts, microseconds), after checking them all. Raises `ValueError`."""
    checked: dict[str, tuple[str, int]] = {}
    for conversation, ts in marks.items():
        if not isinstance(conversation, str) or not conversation:
            raise ValueError(f"{conversation!r} is not a conversation id")
        checked[conversation] = (ts, ts_micros(ts))
    return checked


def load_envelope(stored: str | None) -> dict[str, Any]:
    """An envelope as a backend stored it, or {} when it is missing or unreadable (then it cannot run again)."""
    try:
        value = json.loads(stored) if stored else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
