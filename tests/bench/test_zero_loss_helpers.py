"""The bench's zero-loss helpers that decide a row's numbers without a bot: the seeded fault schedule, the
moment Slack could deliver, the --only selector, and the verdicts of the rows. Cheap: no processes, no timing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bench import zero_loss_report
from bench.run import GROUPS, row_groups
from bench.zero_loss import MIX_FAULTS, MIX_GAP_S, deliverable_at, fault_schedule


def test_the_fault_schedule_is_seeded_spaced_and_covers_every_kind() -> None:
    schedule = fault_schedule(9, 240.0)
    assert schedule == fault_schedule(9, 240.0)
    assert schedule != fault_schedule(10, 240.0)
    times = [at for at, _ in schedule]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert MIX_GAP_S[0] <= times[0]
    assert all(MIX_GAP_S[0] - 0.01 <= g <= MIX_GAP_S[1] + 0.01 for g in gaps)
    assert times[-1] < 240.0
    kinds = [fault for _, fault in schedule]
    for block in range(len(kinds) // len(MIX_FAULTS)):  # every kind once in each block of five
        chunk = kinds[block * len(MIX_FAULTS) : (block + 1) * len(MIX_FAULTS)]
        assert sorted(chunk) == sorted(MIX_FAULTS)


def test_an_event_sent_during_an_outage_counts_from_the_outages_end() -> None:
    outages = [(100.0, 108.0), (200.0, 208.0)]
    assert deliverable_at(99.9, outages) == 99.9
    assert deliverable_at(100.0, outages) == 108.0
    assert deliverable_at(207.5, outages) == 208.0
    assert deliverable_at(208.0, outages) == 208.0


def test_only_takes_known_groups() -> None:
    assert row_groups(None) == set(GROUPS)
    assert row_groups("crash, ledger") == {"crash", "ledger"}
    with pytest.raises(ValueError, match="comma-separated list of"):
        row_groups("crash,nonsense")
    with pytest.raises(ValueError, match="comma-separated list of"):
        row_groups(",")


def _stop(answered: int, lost: int, doubled: int, on_their_way: int, code: int | None) -> dict[str, Any]:
    return {
        "mentions": 30,
        "answered": answered,
        "lost": lost,
        "doubled": doubled,
        "replies_on_their_way": on_their_way,
        "exit_code": code,
        "exit_s": 0.01,
        "left_in_ledger": None,
    }


def test_a_lost_event_or_an_unexplained_double_is_a_miss() -> None:
    def verdict(nonstop: dict[str, Any]) -> str:
        results = {"zero_loss": {"crash": {"stock": _stop(5, 25, 0, 5, -9), "nonstop": nonstop}}}
        (row,) = zero_loss_report.rows(results)
        return row[-1]

    assert verdict(_stop(30, 0, 30, 30, -9)) == "met"  # every listener cut off mid-way ran again: allowed
    assert verdict(_stop(29, 1, 0, 30, -9)) == "**MISSED**"
    assert verdict(_stop(30, 0, 12, 10, -9)) == "**MISSED**"  # more doubles than replies on their way
