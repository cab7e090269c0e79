"""Catch-up: mentions Slack never delivered, found in the conversations' history and answered once.

`core.py` is one scan, pure (Sans-I/O); `driver.py` runs scans in the supervisor (when, how often, one replica at
a time). docs/how-it-stays-online.md ("Catch-up") says what is recovered and what is not.
"""

from __future__ import annotations

import asyncio

from nonstop.backends import Backends
from nonstop.catchup.driver import CatchUp
from nonstop.config.settings import SupervisorSettings
from nonstop.links.holding import Holding
from nonstop.outbound.marks import answered_ts
from nonstop.status import Telemetry

__all__ = ["CatchUp", "start_catch_up"]


def start_catch_up(
    settings: SupervisorSettings,
    *,
    client: object,
    backends: Backends,
    driver: object,
    pool: Holding,
    telemetry: Telemetry,
) -> asyncio.Task[None]:
    """Catch-up for one run of the supervisor, listening to the pool's views: its task (it ends at once when off)."""
    catch_up = CatchUp(
        settings,
        client=client,
        marks=backends.ledger,
        injector=driver,  # type: ignore[arg-type]
        lead=backends.coordinator,
        telemetry=telemetry,
        answered=answered_ts,
    )
    pool.watch_view(catch_up.on_view)
    # Spares wait for a calm path only while nothing else would hear what a deaf bot misses (nonstop/links/budget.py).
    pool.silences.calm_wanted = lambda: catch_up.view.mode == "off"
    return asyncio.create_task(catch_up.run(), name="catch-up")
