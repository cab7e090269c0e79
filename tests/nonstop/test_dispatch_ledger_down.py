"""A ledger that cannot be written while the bot runs: nothing is acked that is not on record.

The dispatcher runs against a real Bolt `App` (its Web API on the sandbox); only the ledger is made to
fail, as a full disk or a lost volume would. Slack then keeps the event and retries it, and the retry
is handled once the ledger is writable again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from nonstop.ledger import Entry, LedgerError
from nonstop.ledger.memory import MemoryLedger
from nonstop.pipeline.dispatch import Dispatcher
from nonstop.status import Telemetry
from sandbox import Sandbox
from tests.nonstop.dispatching import mention_envelope, until


class FlakyLedger(MemoryLedger):
    def __init__(self) -> None:
        super().__init__(ttl_s=60)
        self.broken = True
        self.refused = 0

    def admit_now(self, entries: list[Entry]) -> list[bool]:
        if self.broken:
            self.refused += 1
            raise LedgerError("disk full")
        return super().admit_now(entries)


def envelope(envelope_id: str, retry_attempt: int) -> dict[str, Any]:
    return mention_envelope(envelope_id, "Ev0DOWN001", retry_attempt=retry_attempt)  # one event, retried


def test_an_unwritable_ledger_means_no_ack_and_the_retry_is_handled(sandbox: Sandbox) -> None:
    app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))
    handled: list[str] = []
    app.event("app_mention")(lambda body: handled.append(body["event_id"]))
    acks: list[str] = []
    ledger = FlakyLedger()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        dispatcher = Dispatcher(
            app,
            send_ack=lambda _link, envelope_id, *_: acks.append(envelope_id),
            flush_acks=lambda: None,
            call_soon=loop.call_soon_threadsafe,
            telemetry=Telemetry(),
            ledger=ledger,
            dedup_ttl_s=60,
            event_threads=2,
            command_threads=1,
            max_backlog=10,
        )
        dispatcher.on_envelope(None, envelope("env-first", 0))
        await until(lambda: ledger.refused >= 1, timeout_s=10)  # the admission, at the end of this loop turn, failed
        await asyncio.sleep(0)  # and one more turn, where an ack would have been written
        assert acks == [], "an event that is not on record must not be acked"
        ledger.broken = False
        dispatcher.on_envelope(None, envelope("env-retry", 1))  # Slack's retry of the same event
        await until(lambda: bool(handled), timeout_s=10)
        dispatcher.stop_accepting()
        await loop.run_in_executor(None, dispatcher.drain, 5)

    asyncio.run(scenario())
    assert acks == ["env-retry"]
    assert handled == ["Ev0DOWN001"]
