"""Slack's connection budget: at most `limit` (10) Socket Mode connections per app, counted by Slack,
and how many of them to hold live while Slack counts dead ones (spare links).

Slack counts every connection it believes alive, including dead ones it has not noticed yet, and
refuses the next one with `too_many_websockets`. This process knows what it holds itself and, from
the latest `hello`'s `num_connections`, how many connections Slack counts that it does not hold.
`Budget.room` is the one place that turns those numbers into "how many more may I open", and
`Budget.live_wanted` the one place that says how many live links to hold while some of what Slack
counts cannot answer; a cluster replaces the budget with one that also counts the other replicas'
connections.

Why `live_wanted` holds what it holds (the sandbox's model, docs/sandbox-model.md: Slack sends each
retry to a connection picked at random among those it counts, dead ones included, and counts a dead
socket for `silent_link_alive_s`, 900 s; every retry of an event falls inside that time in production):

- With D dead and L live, a retry lands on a dead socket with p = D / (D + L), and an event is lost
  when all four attempts do: p⁴. After the bot's two links go silent (D = 2): L = 6 gives p = 0.25,
  the issue-9 target for a dead link (of 20 events sent into one, 14 answered on Slack's first retry,
  18 by its second: p ≲ 0.25).
- But a path that dies kills every live link at once, spares included: each silence adds L to D for the
  next 15 minutes, and at D = 10 Slack refuses every new connection (`too_many_websockets`): the bot is
  deaf until Slack notices. So `live_wanted` keeps room for `target` replacements after one more silence
  (L ≤ limit - D - target), and, since that alone still fills the budget when silences repeat (issue 18:
  three silences 8 s apart, D = 2 + 6 + 2 = 10, every mention of the next minute lost):
- `Silences`: after a silence the bot holds one link until the path has stayed up for `calm_s` (10 s), then
  its slots and one spare, then one more spare per ping round: a link opened while the path still flaps is
  one more dead socket at its next silence. Once a silence comes while Slack still counts the dead of an
  earlier one, the path flaps: one slot link, not `target` (`slots_wanted`), until Slack counts none of its
  dead, so each further silence adds one dead socket, not two or eight, and the room kept is one
  replacement. Three silences 8 s apart then leave D = 2 + 1 + 1 = 4 and five live (p = 0.44) instead of
  D = 10. The cost: for the 10 s after a lone silence one live link of three (p = 0.67, not 0.25), and a
  second silence just after the calm still meets the spares opened by then. In the model of issue 9's fault
  mix that is 3.4 mentions lost per run instead of 1.4; in the three silences, 7 instead of all 120. So the
  calm (and the pacing) apply only while catch-up is off (`calm_wanted`): with history scopes, catch-up hears
  what a deaf bot misses, and the first seconds after a lone silence matter more. Dated numbers, modelled and
  measured: docs/decisions.md.
- `LIVE_PER_DOUBTFUL` live per dead one, up to that: one dead socket is diluted 4 to 1 (p = 0.2)
  without spending more of the budget than it helps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

LIVE_PER_DOUBTFUL = 4
"""Hold up to this many live connections per connection Slack counts that cannot answer (suspect, or dead
and not yet noticed by Slack): a retry then lands on a live one at least 4 times in 5."""


@dataclass
class Budget:
    limit: int = 10

    def room(self, held: int, unaccounted: int) -> int:
        """How many more connections may be opened now. `held`: the links this process holds or is
        opening (suspect ones included: Slack still counts them); `unaccounted`: connections Slack
        counts that this process does not hold (its own dead sockets, or another process's)."""
        return max(0, self.limit - held - unaccounted)

    def live_wanted(self, target: int, doubtful: int, others: int = 0) -> int:
        """How many live links to hold: `target` (the slots) while nothing Slack counts is in doubt;
        while `doubtful` connections Slack counts cannot answer (suspects, dead sockets), up to
        `LIVE_PER_DOUBTFUL` per doubtful one, but never so many that one more silence (every live link
        dead at once) would leave no room for `target` replacements. `others`: the other replicas'
        links, which count against the same limit. The caller still opens only what `room` allows."""
        if doubtful <= 0:
            return target
        keep_free = self.limit - others - doubtful - target  # what a next silence's replacements need
        return max(target, min(LIVE_PER_DOUBTFUL * doubtful, keep_free))

    @staticmethod
    def slots_wanted(target: int, silences: Silences, now: float) -> int:
        """How many slot links to fill now: `target`, or one until the path has stayed up `calm_s` after a
        silence, and while its silences repeat (each silence then adds one dead socket to Slack's count, not
        `target`)."""
        return min(target, 1) if silences.repeating or silences.calm_left(now) > 0 else target


@dataclass
class Silences:
    """The whole-path silences Slack may still remember, as this process saw them (its links turning suspect).

    A silence counts once however many links it kills: links suspected within a ping round (`round_s`) of the
    first belong to it. `forget()` when Slack counts no dead socket of this process any more: the path's record
    is clean.
    """

    calm_s: float = 10.0
    round_s: float = 3.0  # a ping round: the ping interval and the pong timeout
    last: float | None = None  # when the latest silence was first seen (monotonic)
    count: int = 0  # silences seen since Slack last counted no dead socket of this process
    spare_at: float | None = None  # when the latest spare link opened (monotonic)
    # Whether the calm (and the spares' pacing) is worth its price now. Not while catch-up reads the conversations
    # (history scopes): it hears what a deaf bot misses, so spares open at once and the first seconds after a
    # silence stay fast; the
    # one-slot rule while silences repeat stays either way (`nonstop.catchup.start_catch_up` sets it).
    calm_wanted: Callable[[], bool] = field(default=lambda: True)

    def seen(self, now: float) -> bool:
        """A link turned suspect at `now`; True when that starts a new silence."""
        if self.last is not None and now - self.last < self.round_s:
            return False
        self.last = now
        self.count += 1
        return True

    def forget(self) -> None:
        self.count = 0

    @property
    def repeating(self) -> bool:
        """A silence came while Slack still counted the dead sockets of an earlier one: the path flaps."""
        return self.count >= 2

    def calm_left(self, now: float) -> float:
        """Seconds until the path has stayed up `calm_s` since the latest silence (0: calm, spares may open)."""
        if self.last is None or self.count == 0 or not self.calm_wanted():
            return 0.0
        return max(0.0, self.last + self.calm_s - now)

    def spare_wait(self, now: float) -> float:
        """Seconds until the next spare link may open: after the calm, one per ping round while silences are
        remembered, so that a silence just after the calm kills a spare or two, not all of them."""
        wait = self.calm_left(now)
        if self.count and self.spare_at is not None and self.calm_wanted():
            wait = max(wait, self.spare_at + self.round_s - now)
        return wait


class ConnectionShare(Protocol):
    """This process's share of Slack's connections, as the link pool asks it (`nonstop.coordination`)."""

    changed: asyncio.Event  # set (and replaced) whenever `allowed` changes

    @property
    def allowed(self) -> int:
        """How many slot links this process may hold now (0: a standby)."""

    @property
    def recheck_s(self) -> float:
        """How long to wait before asking again after a refused `acquire` (room made elsewhere shows late)."""

    async def acquire(self) -> bool:
        """Reserve one connection before opening it; False when none is free."""

    def release(self) -> None:
        """One connection is gone (closed, dropped or never opened)."""

    async def wait_for_room(self, timeout_s: float) -> None:
        """After a refused `acquire`: until a connection here is released, or `timeout_s`."""

    def others_held(self) -> int:
        """Connections other processes of the app hold: Slack counts them too."""

    def others_short(self) -> int:
        """Connections other processes are owed and do not hold yet (spares here give way to them)."""

    def hello(self, num_connections: object, open_here: int) -> None:
        """Slack's count of the app's connections, from a new link's hello; `open_here`: the links open here."""

    def watch(self, callback: Callable[[], None]) -> None:
        """`callback()` whenever what other processes hold or are owed may have changed."""
