"""`Coordinator`: what processes of one app agree on — each one's share of Slack's connections, who is alive,
and who runs the events of one that died — opened beside the ledger from the same URL
(`nonstop.backends`). Alone (`LocalCoordinator`) there is nothing to agree on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from nonstop.coordination.share import LocalShare
from nonstop.ledger.base import Recovered
from nonstop.links.budget import ConnectionShare
from nonstop.status import ClusterView

__all__ = ["Coordinator", "LocalCoordinator", "Takeover"]

Takeover = Callable[[Recovered, str], None]
"""takeover(recovered, source): run these events here (`source` says where they come from, for the log)."""


class Coordinator(ABC):
    share: ConnectionShare
    shared: bool = False  # whether other processes share the ledger (then unfinished events go to them)

    @property
    def view(self) -> ClusterView | None:
        """The cluster as status shows it; None when running alone."""
        return None

    @abstractmethod
    async def start(self) -> None:
        """Join (before any link opens): from now on `share` answers."""

    @abstractmethod
    async def run(self, takeover: Takeover) -> None:
        """Keep this process's membership, and hand the events of processes that died to `takeover`; until
        cancelled."""

    async def lead(self, name: str, ttl_s: float) -> bool:
        """Take or renew the lease on the work called `name` for `ttl_s`: True while this process holds it (one
        process at a time does that work; a holder that dies lets it lapse, and another takes it over)."""
        return True

    async def step_down(self, name: str) -> None:
        """Give the lease on `name` up now, if this process holds it."""
        return None

    def stop_taking_over(self) -> None:
        """Stopping: keep the membership (events still run here), take nothing more over."""
        return None

    @abstractmethod
    async def leave(self) -> None:
        """A graceful stop, after the links are closed: what this process held goes to the others at once."""


class LocalCoordinator(Coordinator):
    """One process alone: it may hold what it wishes for, and nobody else's events come its way."""

    def __init__(self, wish: int) -> None:
        self.share = LocalShare(wish)

    async def start(self) -> None:
        return None

    async def run(self, takeover: Takeover) -> None:
        """Nothing to keep: returns at once (a timer that wakes an idle bot for nothing costs idle CPU)."""
        return None

    async def leave(self) -> None:
        return None
