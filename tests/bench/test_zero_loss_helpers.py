"""The bench's zero-loss helpers that decide a row's numbers without a bot: the seeded fault schedule, the
moment Slack could deliver, the --only selector, and the verdicts of the rows. Cheap: no processes, no timing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bench import zero_loss_report
from bench.run import GROUPS, row_groups
from bench.zero_loss import MIX_FAULTS, MIX_GAP_S, attempts_seen, deliverable_at, fault_schedule
from sandbox.records import Attempt, ConnectionInfo, DeliveryRecord


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


def test_each_attempt_of_a_lost_event_says_what_slack_could_pick_from() -> None:
    conns = {
        "c1": ConnectionInfo("c1", 0.0, hello_at=1.0, silenced_at=50.0),  # went silent at 50
        "c2": ConnectionInfo("c2", 0.0, hello_at=1.0, silenced_at=50.0),
        "c3": ConnectionInfo("c3", 51.0, hello_at=52.0),  # the replacement
        "c4": ConnectionInfo("c4", 0.0, hello_at=1.0, disconnect_at=20.0, closed_at=21.0),  # refreshed away
    }
    record = DeliveryRecord("k", "events_api", "Ev1", {})
    record.attempts += [
        Attempt("e1", "c1", 50.5, 0, 50.5),  # into a dead socket before the replacement
        Attempt("e2", "c2", 53.5, 1, 53.5),  # the first retry: one live of three
        Attempt("e3", None, 70.0, 2, 70.0),  # never sent
    ]
    seen = attempts_seen(record, conns, start=10.0, struck=[(49.0, "silence")])
    assert seen["after"] == "silence"
    assert [(a["to"], a["routable"], a["silent"]) for a in seen["attempts"]] == [
        ("silent", 2, 2),
        ("silent", 3, 2),
        ("never sent", 3, 2),
    ]
    assert [a["at_s"] for a in seen["attempts"]] == [40.5, 43.5, 60.0]


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
