"""Acks first: while envelopes keep arriving, the dispatcher acks them and holds their listeners back.

A real Bolt `App` (Web API on the sandbox) and a real ledger; the two timings are parameters so the test
can use long ones (half a second of quiet, a minute's bound) and stay independent of the machine's speed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from nonstop.ledger import Ledger
from nonstop.ledger.memory import MemoryLedger
from nonstop.ledger.sqlite import SqliteLedger
from nonstop.pipeline.dispatch import Dispatcher
from nonstop.status import Telemetry
from sandbox import Sandbox
from tests.nonstop.dispatching import mention_envelope, until


def envelope(n: int) -> dict[str, Any]:
    return mention_envelope(f"env-{n}", f"Ev0FIRST{n:04d}", ts=f"1700000000.{n:06d}")


class Bot:
    def __init__(self, sandbox: Sandbox, ledger: Ledger, quiet_s: float, within_s: float) -> None:
        self.app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))
        self.started: list[tuple[float, str]] = []
        self.acks: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.app.event("app_mention")(self._listener)
        self.ledger = ledger
        self.quiet_s, self.within_s = quiet_s, within_s

    def _listener(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.started.append((time.monotonic(), body["event_id"]))

    def dispatcher(self) -> Dispatcher:
        loop = asyncio.get_running_loop()
        return Dispatcher(
            self.app,
            send_ack=lambda _link, envelope_id, *_: self.acks.append((time.monotonic(), envelope_id)),
            flush_acks=lambda: None,
            call_soon=loop.call_soon_threadsafe,
            telemetry=Telemetry(),
            ledger=self.ledger,
            dedup_ttl_s=60,
            event_threads=4,
            command_threads=1,
            max_backlog=100,
            start_when_quiet_s=self.quiet_s,
            start_within_s=self.within_s,
        )

    def started_count(self) -> int:
        with self._lock:
            return len(self.started)


def test_listeners_wait_while_envelopes_keep_arriving_then_all_run(sandbox: Sandbox) -> None:
    bot = Bot(sandbox, MemoryLedger(ttl_s=60), quiet_s=0.5, within_s=60)

    async def scenario() -> None:
        dispatcher = bot.dispatcher()
        for n in range(20):  # one every ~20 ms: never half a second of quiet
            dispatcher.on_envelope(None, envelope(n))
            await asyncio.sleep(0.02)
        await until(lambda: len(bot.acks) == 20)
        assert bot.started_count() == 0, "no listener may start while envelopes keep arriving"
        last_ack = bot.acks[-1][0]
        await until(lambda: bot.started_count() == 20)
        assert min(t for t, _ in bot.started) >= last_ack, "every ack before the first listener"
        dispatcher.stop_accepting()
        assert await asyncio.to_thread(dispatcher.drain, 10)

    asyncio.run(scenario())


def test_a_steady_stream_still_starts_its_listeners_within_the_bound(sandbox: Sandbox) -> None:
    bot = Bot(sandbox, MemoryLedger(ttl_s=60), quiet_s=60, within_s=0.3)

    async def scenario() -> None:
        dispatcher = bot.dispatcher()
        first = time.monotonic()
        dispatcher.on_envelope(None, envelope(0))
        await until(lambda: bot.started_count() == 1)
        assert bot.started[0][0] - first >= 0.3 - 0.01, "held for the bound, no longer needed"
        dispatcher.stop_accepting()
        assert await asyncio.to_thread(dispatcher.drain, 10)

    asyncio.run(scenario())


@pytest.mark.parametrize("durable", [True, False])
def test_stopping_with_listeners_held_back(sandbox: Sandbox, tmp_path: Path, durable: bool) -> None:
    """A durable ledger keeps the held-back events on record for the next start (none begun, none cut off);
    with memory:// they would be lost, so they run during the drain."""
    ledger: Ledger = SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60) if durable else MemoryLedger(ttl_s=60)
    bot = Bot(sandbox, ledger, quiet_s=60, within_s=60)

    async def scenario() -> None:
        await ledger.open()
        dispatcher = bot.dispatcher()
        for n in range(5):
            dispatcher.on_envelope(None, envelope(n))
        await until(lambda: len(bot.acks) == 5)
        dispatcher.stop_accepting()
        assert await asyncio.to_thread(dispatcher.drain, 10)
        unfinished = await dispatcher.settle()
        if durable:
            assert bot.started_count() == 0
            assert len(unfinished) == 5, "left on record, to run at the next start"
        else:
            assert bot.started_count() == 5
            assert unfinished == []
        await ledger.close()

    asyncio.run(scenario())
