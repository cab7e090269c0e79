from __future__ import annotations

import asyncio
import itertools
import time

from nonstop.links.budget import Budget, Silences
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


def test_links_suspected_in_one_ping_round_are_one_silence_and_a_later_one_repeats() -> None:
    silences = Silences(calm_s=10.0, round_s=3.0)
    assert silences.seen(100.0)  # the first link of the path turns suspect: a silence begins
    assert not silences.seen(100.4)  # its other link, in the same ping round: the same silence
    assert silences.count == 1
    assert not silences.repeating
    assert silences.seen(108.0)  # the path dies again 8 s later, Slack still counting the first dead
    assert silences.repeating
    silences.forget()  # a hello shows Slack counts none of our dead sockets any more
    assert silences.count == 0
    assert not silences.repeating


def test_spares_wait_until_the_path_has_stayed_up_for_the_calm_period() -> None:
    silences = Silences(calm_s=10.0, round_s=3.0)
    assert silences.calm_left(0.0) == 0.0  # no silence yet: nothing to wait for
    silences.seen(50.0)
    assert silences.calm_left(52.0) == 8.0
    assert silences.calm_left(60.0) == 0.0
    silences.seen(58.0)  # a new silence before the calm ended starts the wait again
    assert silences.calm_left(60.0) == 8.0
    silences.forget()
    assert silences.calm_left(60.0) == 0.0  # Slack counts none of them: the past silences no longer matter
    assert Silences(calm_s=0.0).calm_left(0.0) == 0.0


def test_one_slot_link_just_after_a_silence_and_while_silences_repeat() -> None:
    silences = Silences(calm_s=10.0, round_s=3.0)
    assert Budget.slots_wanted(2, silences, now=0.0) == 2
    silences.seen(0.0)
    assert Budget.slots_wanted(2, silences, now=5.0) == 1  # a link opened now may die with the path
    assert Budget.slots_wanted(2, silences, now=10.0) == 2  # calm: every slot again
    silences.seen(20.0)
    assert Budget.slots_wanted(2, silences, now=40.0) == 1  # calm, but the path flaps: one slot
    assert Budget.slots_wanted(0, silences, now=40.0) == 0  # a standby replica holds none either way
    silences.forget()
    assert Budget.slots_wanted(2, silences, now=40.0) == 2


def test_three_silences_8_s_apart_leave_room_for_a_replacement() -> None:
    """The arithmetic behind issue 18's scenario: two links, a silence, one link (calm), a silence, one link
    (repeating), a silence: Slack counts 2 + 1 + 1 dead; one slot and spares keep one replacement's room."""
    budget = Budget(limit=10)
    dead = 2 + 1 + 1
    live = budget.live_wanted(target=1, doubtful=dead)
    assert live == 5  # 10 - 4 dead - 1 kept for the next silence's replacement
    assert dead + live + 1 <= 10
    # Before issue 18 (spares at once, both slots): 2 + 6 + 2 dead and no room at all.
    assert 2 + budget.live_wanted(target=2, doubtful=2) + 2 == 10


def test_after_the_calm_spares_open_one_per_ping_round_while_silences_are_remembered() -> None:
    silences = Silences(calm_s=10.0, round_s=3.0)
    assert silences.spare_wait(0.0) == 0.0  # no silence: spares (for another process's dead) open at once
    silences.seen(100.0)
    assert silences.spare_wait(104.0) == 6.0  # the calm first
    silences.spare_at = 110.0  # a spare opened as the calm ended
    assert silences.spare_wait(111.0) == 2.0  # the next one a ping round later
    assert silences.spare_wait(113.0) == 0.0
    silences.forget()
    assert silences.spare_wait(111.0) == 0.0  # Slack counts none of our dead: no pacing


def test_no_calm_while_catch_up_reads_the_conversations() -> None:
    catch_up_on = True
    silences = Silences(calm_s=10.0, round_s=3.0, calm_wanted=lambda: not catch_up_on)
    silences.seen(0.0)
    assert silences.calm_left(1.0) == 0.0  # catch-up hears what a deaf bot misses: spares at once
    silences.spare_at = 1.0
    assert silences.spare_wait(1.5) == 0.0  # all of them, not one per ping round
    assert Budget.slots_wanted(2, silences, now=1.0) == 2
    catch_up_on = False  # no history scopes: the calm is worth its price
    assert silences.calm_left(1.0) == 9.0
    assert Budget.slots_wanted(2, silences, now=1.0) == 1
    silences.seen(5.0)  # silences repeat: one slot either way
    catch_up_on = True
    assert Budget.slots_wanted(2, silences, now=30.0) == 1
