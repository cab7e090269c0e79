from __future__ import annotations

import asyncio
import itertools
import time

from nonstop.links.budget import Budget
from nonstop.links.gate import ConnectGate


def test_a_hold_off_spaces_every_callers_attempts_not_each_ones() -> None:
    """Three slots retrying through one gate during an outage: one attempt per hold-off, not three."""

    async def main() -> list[float]:
        gate = ConnectGate()
        attempts: list[float] = []

        async def slot() -> None:
            for _ in range(3):
                async with gate.turn(asyncio.sleep, lambda: False):
                    attempts.append(time.monotonic())
                    gate.hold_off(0.1)  # the attempt failed

        await asyncio.gather(slot(), slot(), slot())
        return attempts

    attempts = asyncio.run(main())
    assert len(attempts) == 9
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert min(gaps) >= 0.09, gaps


def test_a_stopping_caller_is_let_through_at_once() -> None:
    async def main() -> float:
        gate = ConnectGate()
        gate.hold_off(60)
        started = time.monotonic()

        async def short_sleep(seconds: float) -> None:
            await asyncio.sleep(0.01)  # as the supervisor's sleep, cut short by a stop

        async with gate.turn(short_sleep, lambda: True):
            return time.monotonic() - started

    assert asyncio.run(main()) < 30


def test_budget_counts_what_slack_counts_that_we_do_not_hold() -> None:
    budget = Budget(limit=10)
    assert budget.room(held=2, unaccounted=0) == 8
    assert budget.room(held=8, unaccounted=2) == 0
    assert budget.room(held=9, unaccounted=5) == 0


def test_live_wanted_keeps_room_for_the_replacements_a_next_silence_needs() -> None:
    budget = Budget(limit=10)
    assert budget.live_wanted(target=2, doubtful=0) == 2  # nothing dead: the slots only
    assert budget.live_wanted(target=2, doubtful=1) == 4  # four live per dead one
    # Two dead: six live, not eight; if those six die too, Slack counts 8 and 2 replacements still fit.
    assert budget.live_wanted(target=2, doubtful=2) == 6
    assert budget.live_wanted(target=2, doubtful=8) == 2  # at worst the slots themselves
    assert budget.live_wanted(target=2, doubtful=2, others=4) == 2  # other replicas' links count too
    for dead in range(1, 7):  # after one more silence (every live link dead too) two replacements still fit
        assert dead + budget.live_wanted(target=2, doubtful=dead) + 2 <= 10, dead
