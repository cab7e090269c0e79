"""The governor's decisions on a fake clock: order per lane, buckets learned from 429s, backoff, deadlines."""

from __future__ import annotations

import random

from nonstop.net.retry import Schedule
from nonstop.outbound.governor import Call, Governor
from nonstop.outbound.limits import POST_MESSAGE, TIERS, limit_for

DEADLINE = 300.0


def post(channel: str, rank: float, at: float = 0.0, deadline: float = DEADLINE) -> Call:
    key, limit = limit_for("chat.postMessage", channel)
    return Call("chat.postMessage", channel, (rank, at), at + deadline, key, limit)


def governor() -> Governor:
    return Governor(schedule=Schedule(fast_s=1.0, small_jitter=0.0), rng=random.Random(1))


def drain(g: Governor, start: float, until: float) -> list[tuple[float, Call]]:
    """Follow the governor's wake-ups from `start` to `until`, every call it sends delivered at once."""
    sent: list[tuple[float, Call]] = []
    now = start
    while now <= until:
        due = g.due(now)
        for call in due.send:
            sent.append((now, call))
            g.done(call)
        if due.send:
            continue  # the lanes moved on: look again at the same instant
        if due.wake_at is None:
            break
        now = due.wake_at
    return sent


def test_a_free_lane_with_a_fresh_bucket_sends_at_once_and_busies_the_lane() -> None:
    g = governor()
    first, second = post("C1", 1.0), post("C1", 2.0)
    assert g.submit(first, 0.0)
    assert not g.submit(second, 0.0), "one call at a time per conversation"
    assert g.due(0.0).send == [], "the lane is busy until the first is settled"
    g.done(first)
    assert g.due(0.0).send == [second]


def test_other_conversations_are_not_held_up_by_a_busy_one() -> None:
    g = governor()
    assert g.submit(post("C1", 1.0), 0.0)
    assert not g.submit(post("C1", 2.0), 0.0)
    assert g.submit(post("C2", 3.0), 0.0), "a conversation at its limit holds up nothing else"


def test_answers_leave_in_the_order_of_the_events_they_answer() -> None:
    g = governor()
    busy = post("C1", 0.5)
    assert g.submit(busy, 0.0)
    late_listener_early_event = [post("C1", rank) for rank in (5.0, 3.0, 4.0, 1.0, 2.0)]
    for call in late_listener_early_event:
        g.submit(call, 0.0)
    g.done(busy)
    order = [call.order[0] for _, call in drain(g, 0.0, 10.0)]
    assert order == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_a_bucket_is_optimistic_until_slack_says_429() -> None:
    g = governor()
    sent = 0
    for i in range(50):  # back to back, one lane: no limit is assumed before Slack names one
        call = post("C1", float(i))
        assert g.submit(call, 0.0)
        g.done(call)
        sent += 1
    assert sent == 50
    assert not g.engaged("chat.postMessage:C1")


def test_a_429_waits_exactly_retry_after_then_paces_at_the_documented_rate() -> None:
    g = governor()
    limited = post("C1", 0.0)
    assert g.submit(limited, 10.0)
    assert g.ratelimited(limited, 10.0, 3.0)
    for i in range(1, 6):
        g.submit(post("C1", float(i)), 10.0)
    assert g.due(12.999).send == []
    times = [round(at, 6) for at, _ in drain(g, 10.0, 30.0)]
    # Exactly Retry-After later, then one a second (the documented rate; the bucket emptied at the 429
    # and refilled during the wait, so the burst after it is what 3 s of refill allow).
    assert times[0] == 13.0
    assert times == [13.0, 13.0, 13.0, 14.0, 15.0, 16.0]
    assert g.engaged("chat.postMessage:C1")


def test_an_engaged_bucket_is_forgotten_once_it_stayed_full_for_a_minute() -> None:
    g = Governor(forget_after_s=60.0)
    call = post("C1", 0.0)
    g.submit(call, 0.0)
    g.ratelimited(call, 0.0, 1.0)
    drain(g, 0.0, 2.0)
    assert g.engaged("chat.postMessage:C1")
    full_at = 1.0 + POST_MESSAGE.burst / POST_MESSAGE.per_s
    g.due(full_at + 59.0)
    assert g.engaged("chat.postMessage:C1"), "not yet a minute full"
    g.due(full_at + 61.0)
    assert not g.engaged("chat.postMessage:C1"), "forgotten: the next burst goes as fast as Slack allows"


def test_lanes_that_share_a_tier_bucket_share_its_pace() -> None:
    g = governor()
    reads = [
        Call("users.info", f"users.info#{i}", (float(i), 0.0), DEADLINE, *limit_for("users.info", None))
        for i in range(3)
    ]
    first = reads[0]
    assert g.submit(first, 0.0)
    g.ratelimited(first, 0.0, 2.0)
    for call in reads[1:]:
        g.submit(call, 0.0)
    sent = drain(g, 0.0, 10.0)
    assert {round(at, 3) for at, _ in sent} == {2.0}, "every lane of the method waited out the same Retry-After"
    tier4 = TIERS[4]
    assert len(sent) == 3 <= tier4.burst


def test_a_passing_failure_waits_by_the_policy_schedule_and_stays_at_the_head_of_its_lane() -> None:
    g = governor()
    first, second = post("C1", 1.0), post("C1", 2.0)
    assert g.submit(first, 0.0)
    g.submit(second, 0.0)
    assert g.failed(first, 0.0)
    assert g.due(0.5).send == [], "the failed answer waits, and the next one does not overtake it"
    assert g.due(1.0).send == [first]


def test_a_call_whose_next_chance_lies_past_its_deadline_is_given_up_and_its_lane_moves_on() -> None:
    g = governor()
    doomed = post("C1", 1.0, deadline=5.0)
    after = post("C1", 2.0)
    assert g.submit(doomed, 0.0)
    g.submit(after, 0.0)
    assert not g.ratelimited(doomed, 0.0, 30.0), "Retry-After beyond the deadline: no point waiting"
    # The bucket is closed for 30 s for everyone; the next answer waits for it, within its own deadline.
    due = g.due(0.0)
    assert due.send == []
    assert due.wake_at == 30.0
    assert g.due(30.0).send == [after]


def test_a_waiting_call_expires_when_its_turn_would_come_too_late() -> None:
    g = governor()
    busy = post("C1", 0.0)
    g.submit(busy, 0.0)
    g.ratelimited(busy, 0.0, 10.0)
    short = post("C1", 1.0, deadline=5.0)
    g.submit(short, 0.0)
    due = g.due(1.0)
    assert due.expired == []
    assert due.wake_at == 5.0, "wakes at its deadline, though not at the head of its lane"
    due = g.due(5.001)
    assert due.expired == [short], "its turn (10 s) never came before its deadline (5 s)"
    assert due.wake_at == 10.0


def test_a_call_can_switch_buckets_between_steps() -> None:
    g = governor()
    call = post("C1", 1.0)
    look_key, look_limit = limit_for("conversations.replies", None)
    call.key, call.limit = look_key, look_limit
    assert g.submit(call, 0.0)
    g.ratelimited(call, 0.0, 5.0)
    assert g.engaged(look_key)
    assert not g.engaged("chat.postMessage:C1")
    assert g.due(5.0).send == [call]
    call.key, call.limit = limit_for("chat.postMessage", "C1")
    assert g.again(call, 5.0)
    g.done(call)  # was busy from due(); `again` put it back
    assert g.due(5.0).send == [call], "the post itself is not held by the lookup's bucket"


def test_waiting_counts_queued_calls_only() -> None:
    g = governor()
    g.submit(post("C1", 1.0), 0.0)
    for rank in (2.0, 3.0):
        g.submit(post("C1", rank), 0.0)
    assert g.waiting == 2


def test_posts_are_limited_per_conversation_and_other_methods_per_method() -> None:
    assert limit_for("chat.postMessage", "C1")[0] != limit_for("chat.postMessage", "C2")[0]
    assert limit_for("chat.update", "C1")[0] == limit_for("chat.update", "C2")[0] == "chat.update"


def test_a_thread_backing_off_does_not_hold_up_another_thread_of_its_channel() -> None:
    g = governor()
    key, limit = limit_for("chat.postMessage", "C1")
    failing = Call("chat.postMessage", "C1/1.0", (1.0, 0.0), DEADLINE, key, limit)
    other = Call("chat.postMessage", "C1/2.0", (2.0, 0.0), DEADLINE, key, limit)
    assert g.submit(failing, 0.0)
    assert g.failed(failing, 0.0), "it waits a second before its next try"
    assert g.submit(other, 0.1), "another thread of the channel goes at once, though older events wait"
    g.done(other)
    assert g.due(0.5).send == []
    assert g.due(1.0).send == [failing]


def test_at_most_a_burst_of_one_bucket_is_in_the_air() -> None:
    g = governor()
    calls = [Call("chat.postMessage", f"C1/{i}", (float(i), 0.0), DEADLINE, *limit_for("chat.postMessage", "C1"))
             for i in range(10)]  # fmt: skip
    went = [g.submit(call, 0.0) for call in calls]
    assert went.count(True) == POST_MESSAGE.burst
    assert g.due(0.0).send == []
    g.done(calls[0])
    assert g.due(0.0).send == [calls[int(POST_MESSAGE.burst)]], "one lands, the oldest waiting one takes its place"
