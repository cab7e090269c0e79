"""Acks first: while envelopes keep arriving, the pipeline acks them and holds their listeners back.

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
from sandbox import Sandbox
from tests.nonstop.pipeline.harness import Pipeline, RecordedAcks, mention_envelope, until


def envelope(n: int) -> dict[str, Any]:
    return mention_envelope(f"env-{n}", f"Ev0FIRST{n:04d}", ts=f"1700000000.{n:06d}")


class Listener:
    """An app_mention listener on a real App that records when each event's listener started."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))
        self.started: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.app.event("app_mention")(self._listener)

    def _listener(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.started.append((time.monotonic(), body["event_id"]))

    def count(self) -> int:
        with self._lock:
            return len(self.started)


def test_listeners_wait_while_envelopes_keep_arriving_then_all_run(sandbox: Sandbox) -> None:
    listener = Listener(sandbox)

    async def scenario() -> None:
        pipeline = Pipeline(listener.app, MemoryLedger(ttl_s=60), start_when_quiet_s=0.5, start_within_s=60)
        for n in range(20):  # one every ~20 ms: never half a second of quiet
            pipeline.driver.receive(None, envelope(n))
            await asyncio.sleep(0.02)
        await until(lambda: len(pipeline.acks.sent) == 20)
        assert listener.count() == 0, "no listener may start while envelopes keep arriving"
        last_ack = pipeline.acks.sent[-1][0]
        await until(lambda: listener.count() == 20)
        assert min(t for t, _ in listener.started) >= last_ack, "every ack before the first listener"
        assert await pipeline.stop() == []

    asyncio.run(scenario())


def test_a_steady_stream_still_starts_its_listeners_within_the_bound(sandbox: Sandbox) -> None:
    listener = Listener(sandbox)

    async def scenario() -> None:
        pipeline = Pipeline(listener.app, MemoryLedger(ttl_s=60), start_when_quiet_s=60, start_within_s=0.3)
        first = time.monotonic()
        pipeline.driver.receive(None, envelope(0))
        await until(lambda: listener.count() == 1)
        assert listener.started[0][0] - first >= 0.3 - 0.01, "held for the bound, no longer needed"
        assert await pipeline.stop() == []

    asyncio.run(scenario())


class SlowFlush(RecordedAcks):
    """Acks whose first write holds the loop for `hold_s`, as a garbage collection or a wait for the GIL
    while the loop writes a turn's acks can."""

    def __init__(self, hold_s: float) -> None:
        super().__init__()
        self.hold_s = hold_s
        self.flushed_at: float | None = None

    def flush(self) -> None:
        if self.flushed_at is None and self.sent:
            time.sleep(self.hold_s)  # the loop itself is held: nothing is awaited here
            self.flushed_at = time.monotonic()


def test_the_quiet_counts_from_when_the_acks_are_written(sandbox: Sandbox) -> None:
    """Listeners start once the loop has been free to read for the quiet, not counting the time it spent
    writing acks: before, a slow write started them at once, in the middle of a burst."""
    listener = Listener(sandbox)

    async def scenario() -> None:
        acks = SlowFlush(hold_s=0.3)
        pipeline = Pipeline(listener.app, MemoryLedger(ttl_s=60), acks=acks, start_when_quiet_s=0.2, start_within_s=60)
        pipeline.driver.receive(None, envelope(0))
        await until(lambda: listener.count() == 1)
        assert acks.flushed_at is not None
        assert listener.started[0][0] - acks.flushed_at >= 0.2 - 0.01, "a full quiet after the acks were written"
        assert await pipeline.stop() == []

    asyncio.run(scenario())


@pytest.mark.parametrize("durable", [True, False])
def test_stopping_with_listeners_held_back(sandbox: Sandbox, tmp_path: Path, durable: bool) -> None:
    """A durable ledger keeps the held-back events on record for the next start (none begun, none cut off);
    with memory:// they would be lost, so they run during the drain."""
    ledger: Ledger = SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60) if durable else MemoryLedger(ttl_s=60)
    listener = Listener(sandbox)

    async def scenario() -> None:
        await ledger.open()
        pipeline = Pipeline(listener.app, ledger, start_when_quiet_s=60, start_within_s=60)
        for n in range(5):
            pipeline.driver.receive(None, envelope(n))
        await until(lambda: len(pipeline.acks.sent) == 5)
        unfinished = await pipeline.stop()
        if durable:
            assert listener.count() == 0
            assert len(unfinished) == 5, "left on record, to run at the next start"
            assert len((await ledger_reopened(tmp_path)).unfinished) == 5
        else:
            assert listener.count() == 5
            assert unfinished == []
        await ledger.close()

    asyncio.run(scenario())


async def ledger_reopened(tmp_path: Path) -> Any:
    again = SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60)
    try:
        return await again.open()
    finally:
        await again.close()
