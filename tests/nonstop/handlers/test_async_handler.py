"""`AsyncSupervisedSocketModeHandler` with a Bolt `AsyncApp` against the sandbox over 127.0.0.1 (issue 19: an
`AsyncApp` was accepted by the sync handler, and every event acked, then lost).

The app's loop runs on a thread of the test's ("app-loop"), as a program's own `asyncio.run` would; the test drives
the sandbox from outside it, so it can watch acks while a listener blocks that loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from nonstop import AsyncSupervisedSocketModeHandler
from nonstop.config.settings import SupervisorSettings
from nonstop.errors import ConfigError
from nonstop.ledger.memory import MemoryLedger
from nonstop.status import Telemetry
from sandbox import Sandbox
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES, READ_SCOPES
from tests.nonstop.handlers.test_sync_handler import FAST, nonstop_threads

T = TypeVar("T")


class AppLoop:
    """An event loop on a thread of its own, where the app lives."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="app-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def async_pong_app(sb: Sandbox, where: list[str] | None = None) -> AsyncApp:
    app = AsyncApp(client=AsyncWebClient(token=sb.bot_token, base_url=sb.api_url))

    @app.event("app_mention")
    async def mention(event: dict[str, Any], say: Any) -> None:
        if where is not None:
            where.append(threading.current_thread().name)
        await say(text="pong", thread_ts=event["ts"])

    @app.command("/hello")
    async def hello(ack: Any, command: dict[str, Any]) -> None:
        await ack(f"Hello, <@{command['user_id']}>!")

    return app


@contextmanager
def connected(
    sb: Sandbox, app: AsyncApp, telemetry: Telemetry | None = None, **keywords: Any
) -> Iterator[tuple[AsyncSupervisedSocketModeHandler, AppLoop]]:
    keywords.setdefault("settings", FAST)
    app_loop = AppLoop()

    async def make() -> AsyncSupervisedSocketModeHandler:  # on the app's loop, as a program would
        handler = AsyncSupervisedSocketModeHandler(app, sb.app_token, telemetry=telemetry or Telemetry(), **keywords)
        await handler.connect_async()
        return handler

    handler = app_loop.run(make())
    try:
        yield handler, app_loop
    finally:
        app_loop.run(handler.close_async())
        app_loop.close()


def test_an_async_app_answers_mentions_and_commands_on_its_own_loop(sandbox: Sandbox) -> None:
    where: list[str] = []
    with connected(sandbox, async_pong_app(sandbox, where)) as (handler, _):
        assert handler.client.is_connected() is True
        d = sandbox.mention("ping")
        assert sandbox.wait_for_message(thread_ts=d.ts).params["text"] == "pong"
        ack = sandbox.wait_for_ack(sandbox.slash_command("", command="/hello"))
        assert ack.payload == {"text": "Hello, <@U0HUMAN01>!"}
        sandbox.wait_for_connections(2)
    assert where == ["app-loop"]


def test_a_listener_that_blocks_the_apps_loop_delays_no_ack(sandbox: Sandbox) -> None:
    gate = threading.Event()
    app = AsyncApp(client=AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url))

    @app.event("app_mention")
    async def blocking(event: dict[str, Any], say: Any) -> None:
        if "block" in event["text"]:
            gate.wait(30)  # blocks the whole loop: no other listener of this app runs meanwhile
        await say(text="done", thread_ts=event["ts"])

    with connected(sandbox, app) as _:
        first = sandbox.mention("block")
        sandbox.wait_until(lambda: sandbox.delivery(first).acked_at, what="the blocking one acked")
        others = [sandbox.mention(f"ping {i}") for i in range(5)]
        sandbox.wait_until(lambda: all(sandbox.delivery(d).acked_at for d in others), what="acked while blocked")
        assert not gate.is_set()
        assert sandbox.bot_messages() == [], "the app's loop was blocked all along"
        gate.set()
        for d in [first, *others]:
            sandbox.wait_for_message(thread_ts=d.ts)


class RecordingLedger(MemoryLedger):
    """A memory ledger that keeps the order in which events were marked done."""

    def __init__(self) -> None:
        super().__init__(ttl_s=60)
        self.finished: list[str] = []

    async def finish(self, keys: list[str]) -> None:
        self.finished += keys
        await super().finish(keys)


def test_an_event_is_finished_only_when_the_tasks_its_listeners_started_have_ended(sandbox: Sandbox) -> None:
    ledger = RecordingLedger()
    release: list[asyncio.Event] = []
    app = AsyncApp(client=AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url))

    async def slow_part(say: Any, ts: str, done: asyncio.Event) -> None:
        await done.wait()
        await say(text="late", thread_ts=ts)

    @app.event("app_mention")
    async def mention(event: dict[str, Any], say: Any) -> None:
        if "slow" in event["text"]:
            done = asyncio.Event()
            release.append(done)
            asyncio.get_running_loop().create_task(slow_part(say, event["ts"], done))  # outlives the listener
            return
        await say(text="quick", thread_ts=event["ts"])

    with connected(sandbox, app, ledger=ledger) as (_, app_loop):
        slow = sandbox.mention("slow")
        sandbox.wait_until(lambda: release, what="the slow listener returned, its task waiting")
        quick = sandbox.mention("quick")
        sandbox.wait_until(lambda: f"app_mention:C0GENERAL:{quick.ts}" in ledger.finished, what="the quick one done")
        assert f"app_mention:C0GENERAL:{slow.ts}" not in ledger.finished, (
            "the task its listener started is its work too"
        )
        app_loop.loop.call_soon_threadsafe(release[0].set)
        sandbox.wait_for_message(thread_ts=slow.ts)
        sandbox.wait_until(
            lambda: f"app_mention:C0GENERAL:{slow.ts}" in ledger.finished, what="done once its task ended"
        )


def test_close_gives_the_loop_its_task_factory_back_and_leaves_nothing_running(sandbox: Sandbox) -> None:
    app_loop = AppLoop()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=loop, **kwargs)

    app_loop.loop.set_task_factory(factory)  # type: ignore[arg-type]
    handler = AsyncSupervisedSocketModeHandler(async_pong_app(sandbox), sandbox.app_token, settings=FAST)
    try:
        app_loop.run(handler.connect_async())
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
        app_loop.run(handler.client.close())  # Bolt's async tests end with `await handler.client.close()`
        opened = len(sandbox.connections())
        assert app_loop.loop.get_task_factory() is factory
        sandbox.wait_until(lambda: not sandbox.connections(live_only=True), what="every link closed")
        sandbox.wait_until(lambda: not nonstop_threads(), what=f"no handler thread left: {nonstop_threads()}")
        assert len(sandbox.connections()) == opened
    finally:
        app_loop.close()


def test_a_revoked_app_token_makes_connect_async_raise(sandbox: Sandbox) -> None:
    sandbox.revoke("app")
    app_loop = AppLoop()
    handler = AsyncSupervisedSocketModeHandler(async_pong_app(sandbox), sandbox.app_token, settings=FAST)
    try:
        with pytest.raises(ConfigError, match="Slack rejected the app token: token_revoked"):
            app_loop.run(handler.connect_async())
        app_loop.run(handler.close_async())
        assert app_loop.loop.get_task_factory() is None
    finally:
        app_loop.close()


def test_the_async_client_sends_text_and_awaits_its_listeners(sandbox: Sandbox) -> None:
    seen: list[str] = []

    async def on_message(client: Any, message: dict[str, Any], raw: str) -> None:
        seen.append(str(message.get("type")))

    settings = SupervisorSettings(connections=1)
    with connected(sandbox, async_pong_app(sandbox), settings=settings) as (handler, app_loop):
        handler.client.message_listeners.append(on_message)
        app_loop.run(handler.client.send_message("foo"))
        sandbox.wait_until(lambda: any("foo" in m for c in sandbox.connections() for m in c.other_messages), what="foo")
        sandbox.wait_for_message(thread_ts=sandbox.mention("ping").ts)
        sandbox.wait_until(lambda: "events_api" in seen, what="the mention at the message listener")
        app_loop.run(handler.disconnect_async())
        assert handler.client.is_connected() is False
        app_loop.run(handler.connect_async())
        started = time.monotonic()
        sandbox.wait_for_message(thread_ts=sandbox.mention("again").ts)
        assert time.monotonic() - started < 30


def test_catch_up_answers_an_async_app_what_slack_never_delivered(sandbox: Sandbox) -> None:
    sandbox.set_scopes([*BOT_SCOPES.split(","), *HISTORY_SCOPES, *READ_SCOPES])
    with connected(sandbox, async_pong_app(sandbox), settings=replace(FAST, catch_up_period_s=1.0)):
        sandbox.incident()  # recorded in history, never delivered, links up
        lost = sandbox.mention("ping during the incident")
        assert sandbox.wait_for_message(thread_ts=lost.ts, timeout=20).params["text"] == "pong"
        sandbox.end_incident()
        assert len(sandbox.bot_messages()) == 1, "answered once"
