"""The catch-up driver against the sandbox's Web API over real HTTP, through the governed client (scopes seen from
its answers, rate limits at the methods' tiers): what a scan injects, how marks hold, when it scans, and what it
says when it cannot. The pipeline and the lease are stand-ins here; tests/integration/test_catch_up.py runs the
real bot."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import pytest

from nonstop.catchup import driver as catchup_driver
from nonstop.catchup.driver import CatchUp
from nonstop.config.settings import OutboundSettings, SupervisorSettings
from nonstop.coordination.base import LocalCoordinator
from nonstop.ledger.memory import MemoryLedger
from nonstop.net.retry import Schedule
from nonstop.outbound import GovernedWebClient, Outbound
from nonstop.outbound.marks import answered_ts
from nonstop.outbound.metrics import OutboundMetrics
from nonstop.status import Telemetry
from nonstop.status.snapshot import LinksView
from sandbox import Sandbox
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES, READ_SCOPES

WITH_HISTORY = [*BOT_SCOPES.split(","), *HISTORY_SCOPES, *READ_SCOPES]


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """The test on a fresh event loop (the project runs asyncio tests with asyncio.run, no plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Pipeline:
    """Stands in for the pipeline driver's `inject`: runs each event once ("new", then "duplicate", as the ledger
    answers), or refuses it as told."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.refuse: set[str] = set()  # texts to refuse
        self.injected = 0

    async def inject(self, envelopes: list[dict[str, Any]]) -> list[str]:
        outcomes = []
        for envelope in envelopes:
            self.injected += 1
            text = envelope["payload"]["event"]["text"]
            if any(word in text for word in self.refuse):
                outcomes.append("refused")
            elif envelope["payload"]["event_id"] in {e["payload"]["event_id"] for e in self.envelopes}:
                outcomes.append("duplicate")
            else:
                self.envelopes.append(envelope)
                outcomes.append("new")
        return outcomes

    @property
    def texts(self) -> list[str]:
        return [e["payload"]["event"]["text"].split("> ", 1)[1] for e in self.envelopes]


@contextlib.asynccontextmanager
async def scanning(catch_up: CatchUp) -> AsyncIterator[None]:
    """Catch-up running on this loop for the block, cancelled after it."""
    task = asyncio.create_task(catch_up.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def outbound() -> Iterator[Outbound]:
    out = Outbound(OutboundSettings(reply_deadline_s=30), schedule=Schedule(fast_s=0.2), metrics=OutboundMetrics())
    yield out
    out.close()


def make(sb: Sandbox, outbound: Outbound, **settings: Any) -> tuple[CatchUp, Pipeline, MemoryLedger, Telemetry]:
    client = GovernedWebClient(  # as build_app makes the app's client
        token=sb.bot_token, base_url=sb.api_url, outbound=outbound, logger=logging.getLogger("slack_sdk")
    )
    client.auth_test()  # the scopes are known from the first answer, as after build_app's sign-in
    pipeline, ledger, telemetry = Pipeline(), MemoryLedger(60), Telemetry()
    catch_up = CatchUp(
        SupervisorSettings(**settings),
        client=client,
        marks=ledger,
        injector=pipeline,
        lead=LocalCoordinator(1),
        telemetry=telemetry,
        answered=answered_ts,
    )
    return catch_up, pipeline, ledger, telemetry


@run_async
async def test_a_scan_injects_what_slack_never_delivered_once_and_marks_hold_it(
    sandbox: Sandbox, outbound: Outbound
) -> None:
    sandbox.set_scopes(WITH_HISTORY)
    sandbox.incident()
    sandbox.mentions(["one", "two"])
    sandbox.mention("three", channel="C0OTHER")
    catch_up, pipeline, ledger, _ = make(sandbox, outbound)
    assert await catch_up.scan(deep=True) == 3
    assert sorted(pipeline.texts) == ["one", "three", "two"]
    envelope = pipeline.envelopes[0]
    assert envelope["nonstop"] == {"recovered": True}
    assert envelope["payload"]["event"]["channel"] in ("C0GENERAL", "C0OTHER")
    assert set(await ledger.marks()) == {"C0GENERAL", "C0OTHER"}
    assert await catch_up.scan(deep=False) == 0, "since the marks: nothing new"
    sandbox.mention("four")
    assert await catch_up.scan(deep=False) == 1
    assert pipeline.texts[-1] == "four"


@run_async
async def test_a_refused_mention_is_found_again_until_it_is_taken(sandbox: Sandbox, outbound: Outbound) -> None:
    sandbox.set_scopes(WITH_HISTORY)
    sandbox.incident()
    sandbox.mentions(["first", "busy", "last"])
    catch_up, pipeline, _, _ = make(sandbox, outbound)
    pipeline.refuse = {"busy"}
    assert await catch_up.scan(deep=False) == 2
    pipeline.refuse = set()
    assert await catch_up.scan(deep=False) == 1
    assert pipeline.texts[-1] == "busy"


@run_async
async def test_without_history_scopes_it_says_once_that_it_is_off_and_turns_on_when_they_are_granted(
    sandbox: Sandbox, outbound: Outbound, caplog: pytest.LogCaptureFixture
) -> None:
    catch_up, _, _, telemetry = make(sandbox, outbound)
    with caplog.at_level(logging.INFO, logger="nonstop.catchup"):
        async with scanning(catch_up):
            await wait_for(lambda: catch_up.view.mode == "off", "off")
            lines = [r.getMessage() for r in caplog.records if r.name == "nonstop.catchup"]
            assert len(lines) == 1
            assert "catch-up is off" in lines[0]
            assert "channels:history" in lines[0]
            assert "manifest.yml" in lines[0]
            view = telemetry.snapshot().catch_up
            assert view is not None
            assert (view.mode, view.reason) == ("off", "no history scopes")
            sandbox.set_scopes(WITH_HISTORY)  # the app reinstalled with the scopes
            await asyncio.to_thread(catch_up._client.auth_test)  # any answer names them
            await wait_for(lambda: catch_up.view.scans >= 1, "on, and scanning, without a restart")
    assert any("catch-up on" in r.getMessage() for r in caplog.records)


@run_async
async def test_off_by_setting_with_scopes_granted(sandbox: Sandbox, outbound: Outbound) -> None:
    sandbox.set_scopes(WITH_HISTORY)
    catch_up, _, _, _ = make(sandbox, outbound, catch_up=False)
    await asyncio.wait_for(catch_up.run(), 5)
    assert catch_up.view.reason == "NONSTOP_CATCH_UP=off"
    assert sandbox.calls("conversations.history") == []


@run_async
async def test_while_no_link_is_live_it_polls_and_when_links_return_it_scans_at_once(
    sandbox: Sandbox, outbound: Outbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catchup_driver, "POLL_S", 0.3)
    sandbox.set_scopes(WITH_HISTORY)
    catch_up, pipeline, _, telemetry = make(sandbox, outbound, catch_up_period_s=3600)
    async with scanning(catch_up):
        sandbox.incident()
        sandbox.mention("while deaf")
        await wait_for(lambda: pipeline.texts == ["while deaf"], "the poll found it")
        snap = telemetry.snapshot().catch_up
        assert snap is not None
        assert snap.mode == "polling"
        catch_up.on_view(LinksView(target=2, live=2))
        await wait_for(lambda: catch_up.view.mode == "periodic", "back to periodic scans")
        scans = catch_up.view.scans
        sandbox.mention("after the links came back")
        await asyncio.sleep(0.9)  # three polls' worth: no poll while links are live (the period is an hour)
        assert catch_up.view.scans == scans
        catch_up.on_view(LinksView(target=2, live=0))
        catch_up.on_view(LinksView(target=2, live=1))
        await wait_for(lambda: "after the links came back" in pipeline.texts, "a scan as the links came back")
        assert pipeline.texts.count("while deaf") == 1


@run_async
async def test_a_failing_read_is_said_once_per_streak_and_tried_again(
    sandbox: Sandbox, outbound: Outbound, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(catchup_driver, "POLL_S", 0.2)
    sandbox.set_scopes(WITH_HISTORY)
    catch_up, pipeline, _, _ = make(sandbox, outbound)
    sandbox.fail_calls(every=1, mode="http_503", methods=["users.conversations"])
    sandbox.incident()
    sandbox.mention("during the failures")
    with caplog.at_level(logging.INFO, logger="nonstop.catchup"):
        async with scanning(catch_up):
            await wait_for(lambda: catch_up.view.failed_scans >= 3, "three failed scans")
            sandbox.fail_calls(every=0)
            await wait_for(lambda: pipeline.texts == ["during the failures"], "found once Slack answers")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "service_unavailable" in warnings[0].getMessage()
    assert warnings[0].exc_info is None


async def wait_for(predicate: Any, what: str, timeout: float = 10) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@run_async
async def test_history_scopes_without_the_read_scopes_are_named_as_such(sandbox: Sandbox, outbound: Outbound) -> None:
    sandbox.set_scopes([*BOT_SCOPES.split(","), *HISTORY_SCOPES])  # may read, may not list the conversations
    catch_up, _, _, _ = make(sandbox, outbound)
    async with scanning(catch_up):
        await wait_for(lambda: catch_up.view.mode == "off", "off")
    assert catch_up.view.reason == "history scopes without the read scopes"
    assert sandbox.calls("users.conversations") == []


@run_async
async def test_links_that_flap_get_a_scan_each_time_and_a_deep_one_at_most_every_gap(
    sandbox: Sandbox, outbound: Outbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catchup_driver, "DEEP_GAP_S", 2.0)
    sandbox.set_scopes(WITH_HISTORY)
    sandbox.user_message("something to set a mark by")
    catch_up, _, _, _ = make(sandbox, outbound, catch_up_period_s=3600)

    def deep_reads() -> int:  # of #general: a deep read starts at the window's start, a shallow one at its mark
        reads = [c for c in sandbox.calls("conversations.history") if c.params["channel"] == "C0GENERAL"]
        return sum(1 for c in reads if float(c.params["oldest"]) < time.time() - 3000)

    catch_up.on_view(LinksView(target=2, live=2))
    async with scanning(catch_up):
        await wait_for(lambda: catch_up.view.scans == 1, "the start's scan")
        assert deep_reads() == 1, "the start reads the whole window"
        for flap in range(3):
            catch_up.on_view(LinksView(target=2, live=0))
            catch_up.on_view(LinksView(target=2, live=2))
            await wait_for(lambda flap=flap: catch_up.view.scans == 2 + flap, "a scan as the links came back")
        assert deep_reads() == 1, "within the gap those were shallow"
        await wait_for(lambda: deep_reads() == 2, "the deep scan owed, once the gap passed", timeout=5)
        await asyncio.sleep(0.5)
        assert deep_reads() == 2, "one owed, one done"


@run_async
async def test_an_outage_is_said_in_one_line_not_in_slack_sdks_line_per_poll(
    sandbox: Sandbox, outbound: Outbound, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(catchup_driver, "POLL_S", 0.2)
    sandbox.set_scopes(WITH_HISTORY)
    catch_up, _, _, _ = make(sandbox, outbound)
    sandbox.outage(60, mode="refused")
    with caplog.at_level(logging.DEBUG):
        async with scanning(catch_up):
            await wait_for(lambda: catch_up.view.failed_scans >= 4, "four failed polls")
            sandbox.end_outage()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1, said
    assert "catch-up could not read Slack's history" in said[0]


@run_async
async def test_a_mention_in_a_thread_under_an_older_parent_is_found_by_a_periodic_deep_scan(
    sandbox: Sandbox, outbound: Outbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catchup_driver, "DEEP_GAP_S", 0.2)
    monkeypatch.setattr(catchup_driver, "DEEP_EVERY_S", 1.5)  # at 3600 it is not found within 15 s (tried)
    sandbox.set_scopes(WITH_HISTORY)
    parent = sandbox.user_message("a thread to come back to")
    catch_up, pipeline, ledger, _ = make(sandbox, outbound, catch_up_period_s=0.3)
    catch_up.on_view(LinksView(target=2, live=2))
    async with scanning(catch_up):
        await wait_for(lambda: catch_up.view.scans >= 1, "the start's scan")
        newer = sandbox.user_message("later, at the top level")
        marks: dict[str, str] = {}

        async def past_parent() -> bool:
            marks.update(await ledger.marks())
            return marks.get("C0GENERAL") == newer

        deadline = time.monotonic() + 10
        while not await past_parent():
            assert time.monotonic() < deadline, f"the mark never moved past the thread's parent: {marks}"
            await asyncio.sleep(0.05)
        sandbox.incident()  # recorded in history, never delivered, links up
        sandbox.mention("in the old thread", thread_ts=parent)
        await wait_for(lambda: "in the old thread" in pipeline.texts, "the thread's mention, by a deep scan", 15)
        assert pipeline.texts.count("in the old thread") == 1


@run_async
async def test_while_slack_counts_dead_sockets_of_ours_it_scans_every_few_seconds(
    sandbox: Sandbox, outbound: Outbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catchup_driver, "DOUBT_S", 0.3)
    sandbox.set_scopes(WITH_HISTORY)
    catch_up, pipeline, _, _ = make(sandbox, outbound, catch_up_period_s=3600)
    catch_up.on_view(LinksView(target=2, live=2))
    async with scanning(catch_up):
        await wait_for(lambda: catch_up.view.scans == 1, "the start's scan")
        sandbox.incident()  # recorded in history, never delivered (as if routed to a dead socket)
        sandbox.mention("sent to a dead socket")
        await asyncio.sleep(0.9)  # three doubt intervals' worth: none while Slack counts no dead socket of ours
        assert pipeline.texts == []
        catch_up.on_view(LinksView(target=2, live=6, unaccounted=2, own_dead=2))  # after a silence
        await wait_for(lambda: "sent to a dead socket" in pipeline.texts, "a scan within the doubt interval", 5)
