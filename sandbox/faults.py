"""Fault knobs. Owned by the sandbox's event-loop thread; the Web API and sockets consult them."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

OUTAGE_MODES = ("refused", "http_503", "ratelimited", "invalid_auth", "hang")
DISCONNECT_REASONS = ("warning", "refresh_requested", "link_disabled", "too_many_websockets")
# Bad moments of single calls (`Sandbox.fail_calls`). `http_503`: refused before anything happens
# (nothing posted). The others happen after the method took effect (the message IS posted): `internal_error`
# and `fatal_error` answer HTTP 500 with that error [DOC: both "it's possible some aspect of the operation
# succeeded"; INF: the status 500], `cut` closes the connection without any answer.
FAILURE_MODES = ("http_503", "internal_error", "fatal_error", "cut")
AFTER_EFFECT = frozenset(FAILURE_MODES) - {"http_503"}


@dataclass
class Outage:
    mode: str
    retry_after: int
    methods: frozenset[str] | None  # None: every Web API method
    ended: asyncio.Event
    timer: asyncio.TimerHandle | None = None

    def applies_to(self, method: str) -> bool:
        return self.mode == "refused" or self.methods is None or method in self.methods


@dataclass
class Failure:
    """Every `every`-th call of `methods` (None: every method) fails with `mode`; `remaining` failures
    left (None: no end)."""

    mode: str
    every: int
    methods: frozenset[str] | None
    remaining: int | None = None
    seen: int = 0  # matching calls so far

    def take(self, method: str) -> str | None:
        if self.methods is not None and method not in self.methods:
            return None
        if self.remaining is not None and self.remaining <= 0:
            return None
        self.seen += 1
        if self.seen % self.every:
            return None
        if self.remaining is not None:
            self.remaining -= 1
        return self.mode


@dataclass
class Faults:
    outage: Outage | None = None
    revoked: set[str] = field(default_factory=set)  # tokens
    lost_acks: int = 0  # the next N acks, whatever they ack
    lost_first_ack_fraction: float = 0.0  # each first attempt's ack is lost with this probability
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    slow_delay_s: float = 0.0
    slow_methods: frozenset[str] | None = None
    stall_handshake: bool = False
    withhold_hello: bool = False
    link_disabled: bool = False
    failure: Failure | None = None
    incident: bool = False  # events are recorded in history but never delivered

    def api_delay(self, method: str) -> float:
        if self.slow_delay_s <= 0:
            return 0.0
        if self.slow_methods is None or method in self.slow_methods:
            return self.slow_delay_s
        return 0.0

    def outage_for(self, method: str) -> Outage | None:
        if self.outage is not None and self.outage.applies_to(method):
            return self.outage
        return None

    def take_failure(self, method: str) -> str | None:
        """The bad moment this call of `method` meets, if any (see FAILURE_MODES)."""
        return self.failure.take(method) if self.failure is not None else None

    def take_lost_ack(self, first: bool) -> bool:
        """Is this ack lost on the wire? `first`: it acks a delivery's first attempt, not yet acked."""
        if self.lost_acks > 0:
            self.lost_acks -= 1
            return True
        return first and self.lost_first_ack_fraction > 0 and self.rng.random() < self.lost_first_ack_fraction
