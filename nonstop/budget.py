"""Slack's connection budget: at most `limit` (10) Socket Mode connections per app, counted by Slack.

Slack counts every connection it believes alive, including dead ones it has not noticed yet, and
refuses the next one with `too_many_websockets`. This process knows what it holds itself and, from
the latest `hello`'s `num_connections`, how many connections Slack counts that it does not hold.
`Budget.room` is the one place that turns those numbers into "how many more may I open"; a cluster
replaces it with one that also counts the other replicas' connections.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    limit: int = 10

    def room(self, held: int, unaccounted: int) -> int:
        """How many more connections may be opened now. `held`: the links this process holds or is
        opening (suspect ones included: Slack still counts them); `unaccounted`: connections Slack
        counts that this process does not hold (its own dead sockets, or another process's)."""
        return max(0, self.limit - held - unaccounted)
