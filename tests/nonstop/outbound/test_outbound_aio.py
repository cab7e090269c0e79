"""The asyncio driver against the sandbox over real HTTP (each try on a worker thread: slack_sdk's async
client needs aiohttp, which the bot does not install): the same core, waiting as coroutines instead."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slack_sdk.web import SlackResponse

from nonstop.config.settings import OutboundSettings
from nonstop.net.retry import Schedule
from nonstop.outbound import Answering, GovernedWebClient, NotDelivered
from nonstop.outbound.aio import AsyncOutbound
from nonstop.outbound.metrics import OutboundMetrics
from sandbox import Sandbox

FAST = Schedule(fast_s=0.2, small_jitter=0.0)


class ThreadedSender:
    """An async sender whose tries are the sync client's, on a worker thread."""

    def __init__(self, sb: Sandbox) -> None:
        self._client = GovernedWebClient(token=sb.bot_token, base_url=sb.api_url, retry_handlers=[])
        self.base_url = sb.api_url

    async def send_once(self, api_method: str, kwargs: dict[str, Any]) -> SlackResponse:
        return await asyncio.to_thread(self._client.send_once, api_method, kwargs)


async def until(condition: Any, timeout: float = 10) -> None:
    """Wait (with a deadline) until `condition()` holds, without blocking the loop."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def event(n: int) -> Answering:
    return Answering(event_id=f"Ev0AIO{n:04d}", event_ts=f"1700000000.{n:06d}")


def post(out: AsyncOutbound, sender: ThreadedSender, n: int) -> Any:
    body = {"channel": "C0GENERAL", "text": f"answer {n}"}
    return out.call(sender, "chat.postMessage", {"json": body}, event(n))


def test_answers_wait_as_coroutines_and_leave_in_event_order(sandbox: Sandbox) -> None:
    sandbox.outage(0.5, mode="ratelimited", retry_after=1, drop_connections=False, methods=["chat.postMessage"])

    async def main() -> list[SlackResponse]:
        out = AsyncOutbound(OutboundSettings(reply_deadline_s=30), schedule=FAST, metrics=OutboundMetrics())
        sender = ThreadedSender(sandbox)
        first = asyncio.create_task(post(out, sender, 0))
        await until(lambda: out.core.waiting == 1)  # the first is in the governor, waiting out its 429
        rest = [asyncio.create_task(post(out, sender, n)) for n in (3, 1, 2)]
        return await asyncio.gather(first, *rest)

    responses = asyncio.run(main())
    assert all(r["ok"] for r in responses)
    texts = [c.params["text"] for c in sandbox.bot_messages()]
    assert texts == [f"answer {n}" for n in range(4)]
    assert [c.status for c in sandbox.calls("chat.postMessage")].count(429) == 1


def test_a_call_past_its_deadline_raises_not_delivered(sandbox: Sandbox) -> None:
    sandbox.outage(10, mode="ratelimited", retry_after=5, drop_connections=False, methods=["chat.postMessage"])

    async def main() -> None:
        out = AsyncOutbound(OutboundSettings(reply_deadline_s=1.0), schedule=FAST, metrics=OutboundMetrics())
        await post(out, ThreadedSender(sandbox), 1)

    with pytest.raises(NotDelivered):
        asyncio.run(main())


def test_a_cancelled_caller_leaves_the_governor_and_its_conversation_moves_on(sandbox: Sandbox) -> None:
    sandbox.outage(0.5, mode="ratelimited", retry_after=1, drop_connections=False, methods=["chat.postMessage"])

    async def main() -> SlackResponse:
        out = AsyncOutbound(OutboundSettings(reply_deadline_s=30), schedule=FAST, metrics=OutboundMetrics())
        sender = ThreadedSender(sandbox)
        first = asyncio.create_task(post(out, sender, 0))
        await until(lambda: out.core.waiting == 1)
        gone = asyncio.create_task(post(out, sender, 1))
        await until(lambda: out.core.waiting == 2)
        gone.cancel()
        last = await post(out, sender, 2)
        await first
        assert out.core.waiting == 0
        return last

    assert asyncio.run(main())["ok"]
    assert [c.params["text"] for c in sandbox.bot_messages()] == ["answer 0", "answer 2"]
