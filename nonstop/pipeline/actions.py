"""What the pipeline's core (`nonstop.pipeline.core`) tells its driver to do, and what it is told about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk.socket_mode.request import SocketModeRequest

from nonstop.ledger.base import Entry
from nonstop.pipeline.envelopes import older_key

__all__ = ["Ack", "Action", "Arrival", "Observer", "Run", "Start"]


@dataclass(frozen=True, slots=True)
class Ack:
    """Acknowledge `envelope_id` on the link it came by (`via`), with `payload` for an interaction's reply."""

    via: Any
    envelope_id: str
    payload: dict[str, Any] | None
    kind: str
    received_at: float


@dataclass(frozen=True, slots=True)
class Start:
    """Run the listeners of the event known as `key`; tell the pipeline `finished(key)` when all have returned.
    `runs`: how many times the ledger has started it, this time included (over 1: it ran before).
    `recovered`: it came by no link (catch-up found it in history)."""

    key: str
    request: SocketModeRequest
    runs: int = 1
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class Run:
    """Run an interaction's listener; hand its ack payload to `interaction_done`."""

    via: Any
    request: SocketModeRequest
    kind: str
    received_at: float


Action = Ack | Start | Run


@dataclass(frozen=True, slots=True)
class Arrival:
    """An event envelope waiting for its admission to the ledger. `recovered`: it came by no link (`recover`),
    so there is nothing to ack."""

    via: Any
    key: str
    request: SocketModeRequest
    message: dict[str, Any]
    received_at: float
    text: str | None
    recovered: bool = False

    def entry(self) -> Entry:
        return Entry(self.key, self.message, text=self.text, alias=older_key(self.request, self.key))


class Observer(Protocol):
    """Where the pipeline's counts go (`nonstop.status.Telemetry` is one)."""

    def envelope(self, kind: str, outcome: str) -> None: ...

    def duplicate(self) -> None: ...

    def set_backlog(self, backlog: int, limit: int) -> None: ...
