"""A ledger that cannot be written while the bot runs: nothing is acked that is not on record, and the
pipeline does not lose count of what is in progress, whatever the ledger raises.

The pipeline runs a real Bolt `App` (its Web API on the sandbox); only the ledger is made to fail, as a full
disk, a lost volume or a bug in a backend would. Slack then keeps the event and retries it, and the retry is
handled once the ledger is writable again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from nonstop.ledger import Entry, LedgerError
from nonstop.ledger.memory import MemoryLedger
from sandbox import Sandbox
from tests.nonstop.pipeline.harness import Pipeline, mention_envelope, until


class FlakyLedger(MemoryLedger):
    """A local ledger (answers in the same loop turn) that fails with `error` while `broken`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(ttl_s=60)
        self.error = error
        self.broken = True
        self.refused = 0

    def admit_now(self, entries: list[Entry]) -> list[bool]:
        if self.broken:
            self.refused += 1
            raise self.error
        return super().admit_now(entries)


class FlakyRemoteLedger(FlakyLedger):
    """The same, as a ledger that must be awaited (like Redis)."""

    def admit_now(self, entries: list[Entry]) -> None:
        return None

    async def admit(self, entries: list[Entry]) -> list[bool]:
        await asyncio.sleep(0)
        return FlakyLedger.admit_now(self, entries)


def envelope(envelope_id: str, retry_attempt: int) -> dict[str, Any]:
    return mention_envelope(envelope_id, "Ev0DOWN001", retry_attempt=retry_attempt)  # one event, retried


@pytest.mark.parametrize("ledger_kind", [FlakyLedger, FlakyRemoteLedger])
@pytest.mark.parametrize("error", [LedgerError("disk full"), ConnectionResetError("reset by peer")])
def test_an_unwritable_ledger_means_no_ack_and_the_retry_is_handled(
    sandbox: Sandbox, ledger_kind: type[FlakyLedger], error: Exception
) -> None:
    app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))
    handled: list[str] = []
    app.event("app_mention")(lambda body: handled.append(body["event_id"]))
    ledger = ledger_kind(error)

    async def scenario() -> None:
        # A backlog of one: if the failed admission were still counted as in progress, the retry would be
        # refused as "backlog full" forever.
        pipeline = Pipeline(app, ledger, max_backlog=1)
        pipeline.driver.receive(None, envelope("env-first", 0))
        await until(lambda: ledger.refused >= 1, timeout_s=10)
        await asyncio.sleep(0)  # one more turn, where an ack would have been written
        assert pipeline.acks.ids == [], "an event that is not on record must not be acked"
        assert pipeline.core.in_progress == 0
        ledger.broken = False
        pipeline.driver.receive(None, envelope("env-retry", 1))  # Slack's retry of the same event
        await until(lambda: bool(handled), timeout_s=10)
        await pipeline.stop()
        assert pipeline.acks.ids == ["env-retry"]

    asyncio.run(scenario())
    assert handled == ["Ev0DOWN001"]
