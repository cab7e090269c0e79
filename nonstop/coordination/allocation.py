"""How replicas split Slack's connections: one each by age while they last, then the rest to wishes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SLACK_CONNECTION_LIMIT", "Member", "allocate"]

SLACK_CONNECTION_LIMIT = 10
"""Socket Mode connections Slack allows one app at once [DOC: "up to 10"; OBS: `too_many_websockets`]."""


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    wish: int
    held: int
    started_at: float
    handled: int


def allocate(members: list[Member], limit: int = SLACK_CONNECTION_LIMIT) -> dict[str, int]:
    """The split of `limit` connections: one each by age while they last, then the rest by age to wishes."""
    order = sorted(members, key=lambda m: (m.started_at, m.id))
    share = {m.id: 0 for m in order}
    left = limit
    for m in order:
        if left and m.wish > 0:
            share[m.id], left = 1, left - 1
    while left:
        more = [m for m in order if share[m.id] and share[m.id] < m.wish]
        if not more:
            break
        for m in more:
            if left:
                share[m.id] += 1
                left -= 1
    return share
