"""Replies say what message they answer: the metadata carries the answered message's ts, `answered_ts` reads
it back, and the replay lookup finds an answer by its ts as well as by its event id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from nonstop.config.settings import OutboundSettings
from nonstop.net.retry import Schedule
from nonstop.outbound import Answering, GovernedWebClient, Outbound, PendingResponse
from nonstop.outbound.marks import answered_ts, mark, marked_replies, metadata_of
from nonstop.outbound.metrics import OutboundMetrics
from sandbox import Sandbox
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES

TS = "1700000000.000100"


def reply(event_id: str, n: int, ts: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "text": f"answer {n}", "metadata": metadata_of(event_id, n, ts), **extra}


def test_the_metadata_carries_the_answered_message_ts_when_there_is_one() -> None:
    assert metadata_of("Ev1", 0, TS) == {
        "event_type": "nonstop_reply",
        "event_payload": {"event_id": "Ev1", "reply": 0, "ts": TS},
    }
    assert metadata_of("Ev1", 1) == {"event_type": "nonstop_reply", "event_payload": {"event_id": "Ev1", "reply": 1}}
    as_json: dict[str, Any] = {"json": {"channel": "C1", "text": "hi"}}
    assert mark(as_json, "Ev1", 0, TS)
    assert as_json["json"]["metadata"]["event_payload"]["ts"] == TS
    as_form: dict[str, Any] = {"params": {"channel": "C1", "text": "hi"}}
    assert mark(as_form, "Ev1", 0, TS)
    assert json.loads(as_form["params"]["metadata"])["event_payload"] == {"event_id": "Ev1", "reply": 0, "ts": TS}
    own = {"json": {"metadata": {"event_type": "mine", "event_payload": {}}}}
    assert not mark(own, "Ev1", 0, TS), "a listener's own metadata is left alone"


def test_replies_are_found_by_event_id_or_by_the_ts_they_answer() -> None:
    messages = [
        reply("Ev0ORIG", 0, TS),
        reply("Ev0ORIG", 1, TS),
        reply("Ev0OTHER", 0, "1700000000.000200"),
        reply("Ev0OLDER", 0),  # marked before answers carried the ts
        {"type": "message", "text": "a person"},
        "not a message",
    ]
    assert set(marked_replies(messages, "Ev0ORIG")) == {0, 1}
    assert set(marked_replies(messages, "Ev0COPY", TS)) == {0, 1}, "a copy of the same mention finds them by ts"
    assert marked_replies(messages, "Ev0COPY") == {}
    assert set(marked_replies(messages, "Ev0OLDER", TS)) == {0, 1}, "either way matches"
    assert answered_ts(messages) == {TS, "1700000000.000200"}
    assert answered_ts([]) == set()


@pytest.fixture
def outbound() -> Iterator[Outbound]:
    out = Outbound(OutboundSettings(reply_deadline_s=30), schedule=Schedule(fast_s=0.2), metrics=OutboundMetrics())
    yield out
    out.close()


def post(sb: Sandbox, outbound: Outbound, answering: Answering, thread_ts: str) -> Any:
    """Post as a listener does, and wait until the call is settled (posted, or found already posted)."""
    client = GovernedWebClient(token=sb.bot_token, base_url=sb.api_url, outbound=outbound, answering=answering)
    response = client.chat_postMessage(channel="C0GENERAL", text="pong", thread_ts=thread_ts)
    return response.result(10) if isinstance(response, PendingResponse) else response


@pytest.mark.parametrize("by_ts", [True, False])
def test_a_caught_up_copy_finds_the_answer_its_original_got_in_slack(
    sandbox: Sandbox, outbound: Outbound, by_ts: bool
) -> None:
    """The original mention was answered; a copy of it with another event id runs again (a replay): with the
    ts in the metadata, the lookup finds the answer and does not post it twice. Without it, it would."""
    sandbox.set_scopes([*BOT_SCOPES.split(","), *HISTORY_SCOPES])
    ts = sandbox.mention("ping").ts
    post(sandbox, outbound, Answering(event_id="Ev0ORIG", event_ts=ts, message_ts=ts), ts)
    (first,) = sandbox.bot_messages()
    assert first.params["metadata"]["event_payload"]["ts"] == ts  # as the sandbox's Slack received it
    copy = Answering(event_id="Ev0COPY", event_ts=ts, runs=2, message_ts=ts if by_ts else None)
    assert post(sandbox, outbound, copy, ts)["ok"]
    assert len(sandbox.calls("conversations.replies")) == 1, "the replayed copy looked first"
    assert len([c for c in sandbox.bot_messages() if c.status == 200]) == (1 if by_ts else 2)
