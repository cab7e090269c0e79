"""The pipeline's core on its own: pure and synchronous, so every decision is checked with explicit times
and explicit ledger answers, no loop and no threads."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from nonstop.ledger import Entry
from nonstop.pipeline.core import Ack, EventPipeline, Run, Start
from tests.nonstop.pipeline.harness import mention_envelope


class Counts:
    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.duplicates = 0
        self.backlog = (0, 0)

    def envelope(self, kind: str, outcome: str) -> None:
        self.outcomes[(kind, outcome)] += 1

    def duplicate(self) -> None:
        self.duplicates += 1

    def set_backlog(self, backlog: int, limit: int) -> None:
        self.backlog = (backlog, limit)


def pipeline(*, durable: bool = True, max_backlog: int = 10) -> tuple[EventPipeline, Counts]:
    counts = Counts()
    core = EventPipeline(
        max_backlog=max_backlog,
        dedup_ttl_s=60,
        durable=durable,
        observer=counts,
        start_when_quiet_s=0.005,
        start_within_s=0.5,
    )
    return core, counts


def mention(n: int, event_id: str | None = None, ts: str | None = None) -> dict[str, Any]:
    """Mention number `n`: its own message, unless `ts` says which."""
    return mention_envelope(f"env-{n}", event_id or f"Ev{n:04d}", ts=ts or ts_of(n))


def ts_of(n: int) -> str:
    return f"1700000000.{n:06d}"


def key(n: int) -> str:
    """What mention `n` is known by: its message."""
    return f"app_mention:C0GENERAL:{ts_of(n)}"


def command(envelope_id: str) -> dict[str, Any]:
    payload = {"command": "/nonstop", "text": "ping", "user_id": "U0HUMAN01", "channel_id": "C0GENERAL"}
    return {"envelope_id": envelope_id, "type": "slash_commands", "accepts_response_payload": True, "payload": payload}


def admit_all(core: EventPipeline, now: float, known: set[str] = frozenset()) -> list[Any]:  # type: ignore[assignment]
    batch = core.take_admissions()
    return core.admitted(batch, [a.key not in known for a in batch], now)


def test_events_are_acked_only_once_the_ledger_answered() -> None:
    core, _ = pipeline()
    assert core.receive("link-1", mention(1), None, 0.0) == []
    assert core.receive("link-2", mention(2), None, 0.0) == []
    actions = admit_all(core, now=1.0)
    assert [(a.via, a.envelope_id) for a in actions] == [("link-1", "env-1"), ("link-2", "env-2")]
    assert all(isinstance(a, Ack) for a in actions), "listeners are held back until the burst is acked"


def test_a_duplicate_is_acked_and_not_started() -> None:
    core, counts = pipeline()
    core.receive("link", mention(1, "EvSAME", ts_of(1)), None, 0.0)
    core.receive("link", mention(2, "EvSAME", ts_of(1)), None, 0.0)  # the same event on another connection
    batch = core.take_admissions()
    assert [a.key for a in batch] == [key(1), key(1)]
    actions = core.admitted(batch, [True, False], 0.0)
    assert [a.envelope_id for a in actions if isinstance(a, Ack)] == ["env-1", "env-2"]
    assert [a.key for a in core.due(1.0)] == [key(1)]
    assert counts.duplicates == 1


def test_listeners_start_when_quiet_or_at_the_bound() -> None:
    core, _ = pipeline(max_backlog=1000)
    core.receive(None, mention(1), None, 0.0)
    admit_all(core, now=10.0)
    assert core.wake_at == pytest.approx(10.005)
    core.receive(None, mention(2), None, 0.0)
    admit_all(core, now=10.004)  # another one before the quiet: the wait starts over
    assert core.due(10.006) == []
    assert core.wake_at == pytest.approx(10.009)
    for n in range(3, 200):  # a steady stream, one every 4 ms: never quiet
        core.receive(None, mention(n), None, 0.0)
        admit_all(core, now=10.004 + 0.004 * (n - 2))
    assert core.wake_at == pytest.approx(10.5), "held at most start_within_s after the first"
    assert len(core.due(10.5)) == 199
    assert core.wake_at is None


def test_the_backlog_bound_leaves_new_events_for_slack_to_retry() -> None:
    core, counts = pipeline(max_backlog=2)
    for n in range(3):
        core.receive(None, mention(n), None, 0.0)
    assert counts.outcomes[("events_api", "refused_saturated")] == 1
    admit_all(core, now=0.0)
    starts = core.due(1.0)
    core.receive(None, mention(9), None, 0.0)
    assert counts.outcomes[("events_api", "refused_saturated")] == 2, "running events count too"
    core.finished(starts[0].key)
    core.receive(None, mention(9), None, 0.0)
    assert core.has_arrivals, "room again once one finished"


def test_an_admission_that_failed_gives_its_room_back() -> None:
    core, counts = pipeline(max_backlog=1)
    core.receive(None, mention(1), None, 0.0)
    core.not_admitted(core.take_admissions())
    assert core.in_progress == 0
    assert counts.outcomes[("events_api", "refused_ledger")] == 1
    core.receive(None, mention(1), None, 0.0)
    assert core.has_arrivals


def test_finished_events_are_recorded_once() -> None:
    core, _ = pipeline()
    core.receive(None, mention(1), None, 0.0)
    admit_all(core, now=0.0)
    (start,) = core.due(1.0)
    assert core.take_finished() == []
    core.finished(start.key)
    assert core.take_finished() == [key(1)]
    assert core.take_finished() == []
    assert core.unfinished() == []


@pytest.mark.parametrize("durable", [True, False])
def test_a_stop_keeps_held_events_on_record_or_runs_them(durable: bool) -> None:
    core, _ = pipeline(durable=durable)
    core.receive(None, mention(1), None, 0.0)
    admit_all(core, now=0.0)
    starts = core.stop_accepting()
    if durable:
        assert starts == []
        assert core.unfinished() == [key(1)], "on record: it runs at the next start"
    else:
        assert [s.key for s in starts] == [key(1)], "memory:// would lose it: run it in the drain"
    assert core.receive(None, mention(2), None, 0.0) == []
    assert not core.has_arrivals, "no new events while stopping"


def test_interactions_run_while_stopping_and_a_copy_is_acked_like_the_first() -> None:
    core, counts = pipeline()
    core.stop_accepting()
    (run,) = core.receive("link", command("cmd-1"), None, 0.0)
    assert isinstance(run, Run)
    assert core.receive("link", command("cmd-1"), None, 0.0) == [], "still being handled: the first's ack answers"
    (ack,) = core.interaction_done(run, {"text": "pong"})
    assert (ack.envelope_id, ack.payload) == ("cmd-1", {"text": "pong"})
    (again,) = core.receive("other-link", command("cmd-1"), None, 0.0)
    assert (again.via, again.payload) == ("other-link", {"text": "pong"})
    assert counts.duplicates == 2


def test_malformed_envelopes_are_acked_or_ignored_with_a_count() -> None:
    core, counts = pipeline()
    assert core.receive(None, {"type": "events_api", "payload": {}}, None, 0.0) == [], "no envelope id: nothing to ack"
    (ack,) = core.receive(None, {"envelope_id": "e1", "type": "events_api", "payload": "text"}, None, 0.0)
    assert ack.envelope_id == "e1"
    (ack,) = core.receive(None, {"envelope_id": "e2", "type": "slash_commands", "payload": None}, None, 0.0)
    assert ack.envelope_id == "e2", "a type and a payload that is no object: an envelope that cannot be handled"
    assert counts.outcomes[("events_api", "malformed")] == 2


@pytest.mark.parametrize(
    "frame",
    [{"envelope_id": "e1"}, {"envelope_id": "e1", "payload": {}}, {"envelope_id": "e1", "type": "events_api"}],
    ids=["echoed-ack", "no-type", "no-payload"],
)
def test_a_frame_without_type_or_payload_is_ignored_never_acked(frame: dict[str, Any]) -> None:
    """An echo of the bot's own ack (Bolt's test server sends every frame back) is no envelope: acking it would
    make the next echo, forever (issue 19: 6,354 frames a second)."""
    core, counts = pipeline()
    assert core.receive("link", frame, None, 0.0) == []
    assert not core.has_arrivals
    assert counts.outcomes[("other" if "type" not in frame else "events_api", "ignored")] == 1
    assert sum(n for (_, outcome), n in counts.outcomes.items() if outcome != "ignored") == 0


def test_replays_start_as_the_backlog_allows_and_unreadable_ones_are_finished() -> None:
    core, counts = pipeline(max_backlog=2)
    entries = [Entry(f"event:Ev{n}", mention(n, f"Ev{n}")) for n in range(4)]
    entries.append(Entry("event:EvBAD", {"envelope_id": "x", "payload": "not an object"}))
    starts = core.replay(entries)
    assert [s.key for s in starts] == ["event:Ev0", "event:Ev1"]
    assert core.take_finished() == ["event:EvBAD"], "unreadable: marked done, said in the log"
    assert counts.outcomes[("events_api", "unreadable")] == 1
    assert core.replay(entries[:2]) == [], "already running here"
    more = core.finished("event:Ev0")
    assert [s.key for s in more if isinstance(s, Start)] == ["event:Ev2"]
    assert core.unfinished() == ["event:Ev1", "event:Ev2", "event:Ev3"]
