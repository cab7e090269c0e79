"""The arithmetic of bench/spares_model.py on schedules small enough to work out by hand."""

from __future__ import annotations

import pytest

from bench.spares_model import (
    ACK_DEADLINE_S,
    LIMIT,
    POLICIES,
    ROUND_S,
    Span,
    p_dead,
    p_lost,
    spans,
    three_silences,
)

NONSTOP = POLICIES["Nonstop (Budget, Silences)"]
AT_ONCE = POLICIES["spares at once (before issue 18)"]
NO_SPARES = POLICIES["no spare links"]


def test_an_attempt_reaches_a_live_link_in_proportion_to_the_live_share() -> None:
    timeline = [Span(0.0, 6, 2)]
    assert p_dead(timeline, 5.0) == pytest.approx(0.25)
    assert p_lost(timeline, 5.0) == pytest.approx(0.25**4)


def test_a_silence_kills_every_live_link_until_it_is_seen_then_the_policy_refills() -> None:
    timeline = spans([(10.0, "silence")], target=2, policy=AT_ONCE, detect_s=2.0, alive_s=900.0)
    assert timeline == [Span(0.0, 2, 0), Span(10.0, 0, 2), Span(12.0, 6, 2)]
    # sent into the dead links: the first attempt is lost for sure, the three retries land after the refill
    assert p_lost(timeline, 10.5) == pytest.approx(0.25**3)


def test_nonstop_holds_one_link_until_the_path_stayed_up_10_s_then_a_spare_per_ping_round() -> None:
    timeline = spans([(10.0, "silence")], target=2, policy=NONSTOP, detect_s=2.0, alive_s=900.0)
    assert timeline[:4] == [Span(0.0, 2, 0), Span(10.0, 0, 2), Span(12.0, 1, 2), Span(22.0, 3, 2)]  # 2 slots, 1 spare
    rounds = [(round(span.begin, 6), span.live, span.dead) for span in timeline[4:]]
    assert rounds == [(round(22.0 + i * ROUND_S, 6), 3 + i, 2) for i in (1, 2, 3)]  # six live, a ping round apart
    assert p_dead(timeline, 15.0) == pytest.approx(2 / 3)  # the cost: one live link of three meanwhile


def test_a_silence_within_the_calm_adds_one_dead_and_then_one_slot_is_held() -> None:
    timeline = spans([(10.0, "silence"), (18.0, "silence")], target=2, policy=NONSTOP, detect_s=2.0, alive_s=900.0)
    assert Span(18.0, 0, 3) in timeline  # the second silence met one link
    last = timeline[-1]
    assert (last.live, last.dead) == (6, 3)  # then one slot and five spares: one place kept free
    assert last.begin == pytest.approx(30.0 + 4 * ROUND_S)


def test_a_second_silence_adds_every_link_held_then_to_the_dead() -> None:
    timeline = spans([(10.0, "silence"), (20.0, "silence")], target=2, policy=AT_ONCE, detect_s=2.0, alive_s=900.0)
    assert timeline[-1] == Span(22.0, 2, 8)  # 6 more dead; room for the target only
    spare_less = spans([(10.0, "silence"), (20.0, "silence")], target=2, policy=NO_SPARES, detect_s=2.0, alive_s=900.0)
    assert spare_less[-1] == Span(22.0, 2, 4)


def test_slack_forgets_a_dead_link_after_it_notices_and_a_reset_ends_them_all() -> None:
    forgotten = spans([(10.0, "silence"), (50.0, "silence")], target=1, policy=NO_SPARES, detect_s=1.0, alive_s=30.0)
    assert forgotten[-1] == Span(51.0, 1, 1)  # the first silence's dead link is gone by then
    reset = spans([(10.0, "silence"), (20.0, "reset")], target=2, policy=NONSTOP, detect_s=2.0, alive_s=900.0)
    assert reset[-1] == Span(20.0, 2, 0)  # the calm that was under way is over too: nothing dead to outnumber


def test_the_whole_budget_is_never_exceeded() -> None:
    faults = [(10.0 * i, "silence") for i in range(1, 6)]
    for name, policy in POLICIES.items():
        for span in spans(faults, target=2, policy=policy, detect_s=2.0, alive_s=900.0):
            assert span.live + span.dead <= LIMIT, name


def test_an_outage_holds_attempts_until_a_connection_is_back_within_the_deadline() -> None:
    timeline = spans([(10.0, "outage")], target=2, policy=NONSTOP, detect_s=2.0, alive_s=900.0)
    back = timeline[1].outage_end
    assert back is not None
    assert p_dead(timeline, back - ACK_DEADLINE_S - 0.1) == 1.0  # its deadline passes before a link is back
    assert p_dead(timeline, back - ACK_DEADLINE_S + 0.1) == 0.0  # held, then sent on the new link
    assert p_lost(timeline, 10.0) == 0.0  # answered late (its retry lands after the outage), never lost


def test_three_silences_8_s_apart_deafen_spares_at_once_but_not_nonstop() -> None:
    assert three_silences(AT_ONCE) == pytest.approx(120.0)  # 2 + 6 + 2 dead: Slack refuses every link
    assert three_silences(NONSTOP) < 10  # 2 + 1 + 1 dead, then five live links
    assert three_silences(NONSTOP, gap_s=20.0) < three_silences(AT_ONCE, gap_s=20.0)  # past the calm, less bad
