"""For tests that drive the pipeline (`nonstop.pipeline`) directly: an Events API envelope, a pipeline with a
real Bolt runner whose acks are recorded instead of written to a link, and an async wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from slack_bolt import App

from nonstop.bolt.runner import BoltRunner
from nonstop.ledger import Ledger
from nonstop.pipeline.core import EventPipeline
from nonstop.pipeline.driver import PipelineDriver
from nonstop.status import Telemetry


def mention_envelope(
    envelope_id: str, event_id: str, *, retry_attempt: int = 0, ts: str = "1700000000.000100"
) -> dict[str, Any]:
    """An `app_mention` as Slack sends it over Socket Mode."""
    event = {"type": "app_mention", "text": "<@U0BOT0001> ping", "user": "U0HUMAN01", "channel": "C0GENERAL",
             "ts": ts, "event_ts": ts}  # fmt: skip
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "retry_attempt": retry_attempt,
        "payload": {"type": "event_callback", "event_id": event_id, "team_id": "T0EMUL001", "event": event},
    }


class RecordedAcks:
    """An `AckSender` that records (time, envelope id, payload) instead of writing to a link."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, dict[str, Any] | None]] = []

    def send_ack(
        self, via: Any, envelope_id: str, payload: dict[str, Any] | None, kind: str, received_at: float
    ) -> None:
        self.sent.append((time.monotonic(), envelope_id, payload))

    def flush(self) -> None:
        return None

    @property
    def ids(self) -> list[str]:
        return [envelope_id for _, envelope_id, _ in self.sent]


class Pipeline:
    """A pipeline for `app` on the running loop: core, driver and a real runner; acks recorded."""

    def __init__(
        self, app: App, ledger: Ledger, *, max_backlog: int = 100, acks: RecordedAcks | None = None, **timing: float
    ) -> None:
        telemetry = Telemetry()
        self.acks = acks or RecordedAcks()
        self.core = EventPipeline(
            max_backlog=max_backlog, dedup_ttl_s=60, durable=ledger.durable, observer=telemetry, **timing
        )
        self.runner = BoltRunner(app, event_threads=4, command_threads=2, telemetry=telemetry)
        self.driver = PipelineDriver(self.core, ledger=ledger, runner=self.runner, acks=self.acks)

    async def stop(self, timeout_s: float = 10) -> list[str]:
        """Stop as the supervisor does: no new events, drain, record; the keys still unfinished."""
        self.driver.stop_accepting()
        drained = await asyncio.to_thread(self.runner.stop_events, timeout_s, leave_queued=self.core.durable)
        assert drained, "the runner did not drain in time"
        unfinished = await self.driver.settle()
        self.runner.close()
        return unfinished


async def until(check: Callable[[], bool], timeout_s: float = 15) -> None:
    """Wait on the running loop until `check()` holds, or fail after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.01)
