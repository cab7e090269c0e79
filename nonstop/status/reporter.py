"""`StateReporter`: the supervisor's state, worked out when someone asks, from what the parts publish.

Nothing tells the reporter anything: it reads the link pool's published view and the supervisor's phase
(starting, running, stopping, fatal) at the moment a status page, a probe or a scrape wants a snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from nonstop.status.snapshot import ClusterView, LinksView
from nonstop.status.state import State

__all__ = ["Phase", "Report", "StateReporter"]


@dataclass(frozen=True)
class Phase:
    """What the supervisor as a whole is doing; `state` None while it runs (the links then decide)."""

    state: State | None = State.STARTING
    detail: str = ""


@dataclass(frozen=True)
class Report:
    state: State
    detail: str
    target: int
    spare: int
    suspect: int
    slack_reported: int | None
    cluster: ClusterView | None = None
    refusing: bool = False  # Slack refused the latest connection attempt: its budget is full


class StateReporter:
    """Args:
    links: the link pool's latest published view.
    phase: the supervisor's phase.
    cluster: the coordinator's view of the replicas (None: alone).
    """

    def __init__(
        self,
        links: Callable[[], LinksView],
        phase: Callable[[], Phase],
        cluster: Callable[[], ClusterView | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._links = links
        self._phase = phase
        self._cluster = cluster
        self._clock = clock

    def report(self) -> Report:
        view, phase = self._links(), self._phase()
        state, detail = (phase.state, phase.detail) if phase.state is not None else self._from_links(view)
        return Report(
            state, detail, view.target, view.spare, view.suspect, view.slack_counted, self._cluster(), view.refused
        )

    def _from_links(self, v: LinksView) -> tuple[State, str]:
        if v.target == 0:
            return State.CONNECTING, "standby: no connection of Slack's budget is free"
        if v.live >= v.target and (v.spare or v.suspect):
            counted = v.live + v.suspect + v.unaccounted
            return State.CONNECTED, (
                f"{v.target} connections + {v.spare} spare while Slack counts {counted}, "
                f"{counted - v.live} of them silent or dead"
            )
        if v.live >= v.target:
            return State.CONNECTED, ""
        if v.refused:  # Slack counts its whole budget (dead sockets included): no new link until it forgets some
            refused = (
                f"Slack refuses new connections: {v.live + v.suspect + v.unaccounted} of {v.limit} counted, "
                f"{v.live} live here"
            )
            return (
                (State.DEGRADED, f"{v.live} of {v.target} connections; {refused}")
                if v.live
                else (State.REFUSED, refused)
            )
        if v.live > 0:
            return State.DEGRADED, f"{v.live} of {v.target} connections"
        wait = (v.retry_at - self._clock()) if v.retry_at is not None else 0.0
        if wait > 0 and not v.attempting:
            return State.BACKING_OFF, f"waiting {wait:.1f} s before the next attempt"
        return State.CONNECTING, ""
