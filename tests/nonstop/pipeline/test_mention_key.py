"""A mention is known by its message (conversation, ts), not only by its event id: Slack's retry, a late
delivery with another event id, and a copy found in history are one event, run once. Keys an older version
wrote (`event:<id>`) are still recognised."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from nonstop.ledger import Ledger
from nonstop.ledger.memory import MemoryLedger
from nonstop.ledger.sqlite import SqliteLedger
from nonstop.pipeline.envelopes import event_key, key_label, older_key, parse_request
from sandbox import Sandbox
from tests.nonstop.pipeline.harness import Pipeline, mention_envelope, until

TS = "1700000000.000100"


def request_of(message: dict[str, Any]) -> Any:
    request = parse_request(message)
    assert request is not None
    return request


def test_a_mention_is_keyed_by_its_message_and_anything_else_by_its_event_id() -> None:
    mention = request_of(mention_envelope("env-1", "Ev1", ts=TS))
    assert event_key(mention) == f"app_mention:C0GENERAL:{TS}"
    assert older_key(mention, event_key(mention)) == "event:Ev1"
    assert key_label(event_key(mention)) == f"C0GENERAL/{TS}"
    home = request_of(
        {
            "envelope_id": "env-2",
            "type": "events_api",
            "payload": {"event_id": "Ev2", "event": {"type": "app_home_opened"}},
        }
    )
    assert (event_key(home), older_key(home, event_key(home)), key_label(event_key(home))) == ("event:Ev2", None, "Ev2")
    no_ts = mention_envelope("env-3", "Ev3")
    del no_ts["payload"]["event"]["ts"]
    assert event_key(request_of(no_ts)) == "event:Ev3", "a mention without a ts keeps its event id"
    neither = request_of({"envelope_id": "env-4", "type": "events_api", "payload": {"event": {"type": "app_mention"}}})
    assert (event_key(neither), older_key(neither, event_key(neither))) == ("envelope:env-4", None)


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    if request.param == "memory":
        return MemoryLedger(ttl_s=60)
    return SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60)


def counting_app(sandbox: Sandbox, handled: list[str]) -> App:
    app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))
    app.event("app_mention")(lambda body: handled.append(body["event_id"]))
    return app


def test_the_same_mention_with_two_event_ids_runs_once(sandbox: Sandbox, ledger: Ledger) -> None:
    handled: list[str] = []
    app = counting_app(sandbox, handled)

    async def scenario() -> None:
        await ledger.open()
        pipeline = Pipeline(app, ledger)
        pipeline.driver.receive(None, mention_envelope("env-1", "Ev0FIRST", ts=TS))
        await until(lambda: pipeline.acks.ids == ["env-1"])
        pipeline.driver.receive(None, mention_envelope("env-2", "Ev0LATE", ts=TS))  # delivered late, anew
        pipeline.driver.receive(None, mention_envelope("env-3", "Ev0OTHER", ts="1700000000.000101"))
        await until(lambda: len(pipeline.acks.ids) == 3)
        await until(lambda: len(handled) == 2)
        await pipeline.stop()
        assert sorted(handled) == ["Ev0FIRST", "Ev0OTHER"]
        await ledger.close()

    asyncio.run(scenario())


def test_a_mention_recorded_by_its_event_id_is_still_a_duplicate(sandbox: Sandbox) -> None:
    """An older version (or replica) recorded the mention as event:<id>: its retry is not run again."""
    ledger = MemoryLedger(ttl_s=60)
    handled: list[str] = []
    app = counting_app(sandbox, handled)

    async def scenario() -> None:
        await ledger.finish(["event:Ev0OLD"])
        pipeline = Pipeline(app, ledger)
        pipeline.driver.receive(None, mention_envelope("env-retry", "Ev0OLD", ts=TS, retry_attempt=1))
        pipeline.driver.receive(None, mention_envelope("env-new", "Ev0NEW", ts="1700000000.000200"))
        await until(lambda: len(pipeline.acks.ids) == 2)
        await until(lambda: handled == ["Ev0NEW"])
        await pipeline.stop()
        assert handled == ["Ev0NEW"]

    asyncio.run(scenario())
