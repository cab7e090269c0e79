"""Fault knobs. Owned by the sandbox's event-loop thread; the Web API and sockets consult them."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

OUTAGE_MODES = ("refused", "http_503", "ratelimited", "invalid_auth", "hang")
DISCONNECT_REASONS = ("warning", "refresh_requested", "link_disabled", "too_many_websockets")


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

    def take_lost_ack(self, first: bool) -> bool:
        """Is this ack lost on the wire? `first`: it acks a delivery's first attempt, not yet acked."""
        if self.lost_acks > 0:
            self.lost_acks -= 1
            return True
        return first and self.lost_first_ack_fraction > 0 and self.rng.random() < self.lost_first_ack_fraction
