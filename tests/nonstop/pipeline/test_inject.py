"""Envelopes that came by no link (catch-up found their messages in history): `PipelineDriver.inject` puts them
through the same admission, dedupe, backlog and listeners as delivered ones, acks nothing, and says what
became of each: "new", "duplicate" or "refused"."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from listeners import register_listeners
from nonstop.ledger import Entry, Ledger, LedgerError
from nonstop.ledger.memory import MemoryLedger
from nonstop.ledger.sqlite import SqliteLedger
from nonstop.pipeline.core import Ack, Start
from sandbox import Sandbox
from tests.nonstop.pipeline.harness import Pipeline, mention_envelope, until
from tests.nonstop.pipeline.test_core import pipeline


def found(n: int, event_id: str | None = None) -> dict[str, Any]:
    """Mention `n` as catch-up makes it from history: an events_api envelope marked recovered."""
    envelope = mention_envelope(f"catchup-{n}", event_id or f"Ev0FOUND{n:04d}", ts=ts_of(n))
    return {**envelope, "nonstop": {"recovered": True}}


def delivered(n: int, event_id: str | None = None) -> dict[str, Any]:
    return mention_envelope(f"env-{n}", event_id or f"Ev0SLACK{n:04d}", ts=ts_of(n))


def ts_of(n: int) -> str:
    return f"1700000000.{n:06d}"


# -- the core ----------------------------------------------------------------------------------------------


def test_a_recovered_event_is_admitted_started_marked_and_never_acked() -> None:
    core, counts = pipeline()
    arrival = core.recover(found(1), 0.0)
    assert not isinstance(arrival, str)
    assert core.in_progress == 1, "counted against the backlog while the ledger is asked"
    core.receive("link", delivered(2), None, 0.0)
    actions = core.admitted([arrival, *core.take_admissions()], [True, True], 0.0)
    assert [a.envelope_id for a in actions if isinstance(a, Ack)] == ["env-2"], "only the delivered one is acked"
    starts = core.due(1.0)
    assert [(s.key, s.recovered) for s in starts] == [
        (f"app_mention:C0GENERAL:{ts_of(1)}", True),
        (f"app_mention:C0GENERAL:{ts_of(2)}", False),
    ]
    assert counts.outcomes[("events_api", "recovered")] == 1
    assert counts.outcomes[("events_api", "received")] == 1, "a recovered envelope is not counted as received"


def test_a_recovered_event_already_running_here_is_a_duplicate_without_asking_the_ledger() -> None:
    core, counts = pipeline()
    core.receive("link", delivered(1), None, 0.0)
    core.admitted(core.take_admissions(), [True], 0.0)
    assert core.recover(found(1), 0.0) == "duplicate"
    assert counts.duplicates == 0, "not a redelivery by Slack: not counted as one"
    assert counts.outcomes[("events_api", "recovered_duplicate")] == 1


def test_a_recovered_duplicate_from_the_ledger_is_counted_apart_and_not_started() -> None:
    core, counts = pipeline()
    arrival = core.recover(found(1), 0.0)
    assert not isinstance(arrival, str)
    assert core.admitted([arrival], [False], 0.0) == []
    assert core.due(1.0) == []
    assert (counts.duplicates, counts.outcomes[("events_api", "recovered_duplicate")]) == (0, 1)
    assert core.in_progress == 0


def test_a_recovered_event_is_refused_when_the_backlog_is_full_or_while_stopping() -> None:
    core, counts = pipeline(max_backlog=1)
    core.receive("link", delivered(1), None, 0.0)
    assert core.recover(found(2), 0.0) == "refused", "the delivered one, still arriving, fills the backlog"
    core.admitted(core.take_admissions(), [True], 0.0)
    (start,) = core.due(1.0)
    core.finished(start.key)
    assert not isinstance(core.recover(found(2), 0.0), str), "room again"
    core.stop_accepting()
    assert core.recover(found(3), 0.0) == "refused"
    assert counts.outcomes[("events_api", "recovered_refused")] == 2


def test_a_recovered_event_the_ledger_could_not_record_gives_its_room_back() -> None:
    core, counts = pipeline(max_backlog=1)
    arrival = core.recover(found(1), 0.0)
    assert not isinstance(arrival, str)
    core.not_admitted([arrival])
    assert core.in_progress == 0
    assert counts.outcomes[("events_api", "recovered_refused")] == 1
    assert counts.outcomes[("events_api", "refused_ledger")] == 0


def test_a_replayed_recovered_event_is_still_marked_recovered() -> None:
    core, _ = pipeline()
    (start,) = core.replay([Entry(f"app_mention:C0GENERAL:{ts_of(1)}", found(1), runs=2)])
    assert isinstance(start, Start)
    assert (start.recovered, start.runs) == (True, 2)


def test_an_envelope_that_is_not_an_events_api_one_cannot_be_recovered() -> None:
    core, _ = pipeline()
    command = {"envelope_id": "c1", "type": "slash_commands", "payload": {"command": "/nonstop"}}
    with pytest.raises(ValueError, match="not an Events API envelope"):
        core.recover(command, 0.0)
    assert core.in_progress == 0


# -- the driver, with a real App and real ledgers -----------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    if request.param == "memory":
        return MemoryLedger(ttl_s=60)
    return SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60)


def recording_app(sandbox: Sandbox, seen: list[tuple[str, Any, Any]]) -> App:
    app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))

    @app.event("app_mention")
    def mention(body: dict[str, Any], context: dict[str, Any]) -> None:
        seen.append((body["event_id"], context.get("nonstop_recovered"), context.get("nonstop_late_s")))

    return app


def test_injected_mentions_run_once_with_delivered_ones_and_are_never_acked(sandbox: Sandbox, ledger: Ledger) -> None:
    seen: list[tuple[str, Any, Any]] = []
    app = recording_app(sandbox, seen)

    async def scenario() -> None:
        await ledger.open()
        pipeline = Pipeline(app, ledger)
        pipeline.driver.receive(None, delivered(1))  # Slack delivered mention 1
        await until(lambda: len(seen) == 1)
        outcomes = await pipeline.driver.inject([found(1), found(2), found(2, "Ev0FOUNDAGAIN"), found(3)])
        assert outcomes == ["duplicate", "new", "duplicate", "new"]
        await until(lambda: len(seen) == 3)
        assert await pipeline.driver.inject([found(2), found(3)]) == ["duplicate", "duplicate"], "done: still known"
        pipeline.driver.receive(None, delivered(3))  # Slack's late delivery of mention 3, with its own event id
        await until(lambda: len(pipeline.acks.ids) == 2)
        await pipeline.stop()
        assert pipeline.acks.ids == ["env-1", "env-3"], "the late delivery is acked; nothing injected is"
        assert sorted((event_id, recovered) for event_id, recovered, _ in seen) == [
            ("Ev0FOUND0002", True),
            ("Ev0FOUND0003", True),
            ("Ev0SLACK0001", False),
        ]
        await ledger.close()

    asyncio.run(scenario())


class BrokenLedger(MemoryLedger):
    def admit_now(self, entries: list[Entry]) -> list[bool]:
        raise LedgerError("disk full")


def test_injected_mentions_are_refused_when_the_ledger_fails_or_the_backlog_is_full(sandbox: Sandbox) -> None:
    seen: list[tuple[str, Any, Any]] = []
    app = recording_app(sandbox, seen)

    async def scenario() -> None:
        broken = Pipeline(app, BrokenLedger(ttl_s=60))
        assert await broken.driver.inject([found(1), found(2)]) == ["refused", "refused"]
        assert broken.core.in_progress == 0
        await broken.stop()
        full = Pipeline(app, MemoryLedger(ttl_s=60), max_backlog=2)
        assert await full.driver.inject([found(1), found(2), found(3)]) == ["new", "new", "refused"]
        await until(lambda: len(seen) == 2)
        await full.stop()
        with pytest.raises(ValueError, match="events_api envelopes"):
            await full.driver.inject([found(4), {"envelope_id": "x", "type": "interactive", "payload": {}}])
        assert len(seen) == 2, "a bad envelope admits nothing, not even the good ones beside it"

    asyncio.run(scenario())


def test_the_bots_own_answer_to_a_recovered_mention_says_it_is_late(sandbox: Sandbox) -> None:
    """The whole way: a mention three minutes old, injected, answered by the bot's own listeners through Bolt,
    its reply posted to the sandbox's Slack with the apology."""
    app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))
    register_listeners(app)
    ts = f"{time.time() - 185:.6f}"
    message = {**mention_envelope("catchup-late", "Ev0LATE", ts=ts), "nonstop": {"recovered": True}}

    async def scenario() -> None:
        pipeline = Pipeline(app, MemoryLedger(ttl_s=60))
        assert await pipeline.driver.inject([message]) == ["new"]
        posted = await asyncio.to_thread(sandbox.wait_for_message, thread_ts=ts)
        assert posted.params["text"].startswith("pong — sorry, this reached me 3 min late")
        await pipeline.stop()

    asyncio.run(scenario())
