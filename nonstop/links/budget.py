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
  when all four attempts do: p⁴. After the bot's two links go silent (D = 2): L = 8 gives p = 0.2
  (0.16 % of events lost while Slack counts the dead), L = 6 gives p = 0.25 (0.39 %).
- But when the path dies, it kills every live link at once: each silence adds L to D for the next
  15 minutes. Spending the whole budget after the first silence (L = 8) leaves Slack counting
  10 dead sockets at the second one: no connection can even be opened (`too_many_websockets`) and
  every event is lost until Slack notices, up to 15 minutes of deafness. Measured in the fault mix
  (seed 9, bench/zero_loss.py): all five lost mentions were sent while Slack counted 10 connections,
  10 of them silent, after two silences 13 s apart.
- So `live_wanted` keeps room for `target` replacements after one more silence: L ≤ limit - D -
  target. At D = 2 that is L = 6 (p = 0.25), and after a second silence (D = 8) the bot still holds 2
  live links (p = 0.8: 41 % lost instead of 100 %). That is worth more than the single-silence gain
  (0.16 % → 0.39 %) as soon as a second silence within 15 minutes has odds above about 0.4 %, and
  paths that die once tend to die again. A larger reserve (L = 4 at D = 2: p = 0.33) would fail the
  issue-9 target for a dead link (of 20 events sent into one, 14 answered on Slack's first retry,
  18 by its second: that needs p ≲ 0.25).
- `LIVE_PER_DOUBTFUL` live per dead one, up to that: one dead socket is diluted 4 to 1 (p = 0.2)
  without spending more of the budget than it helps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
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
