"""`CatchUp`: runs catch-up scans (`nonstop.catchup.core.Scan`) in the supervisor, beside the link pool.

When it scans, and why (docs/decisions.md, "Catch-up"):
- at start, once the links are live or a few seconds have passed (a bot that was down missed what was said);
- whenever the links come back after none was live (an outage, a whole-path silence, every link dropped): Slack
  may have sent events to the dead sockets, and its retries may land there too;
- every `catch_up_period_s` while links are live: a Slack that drops events looks exactly like a quiet one; every
  `DOUBT_S` while Slack still counts dead sockets of this process (after a silence), since it routes some
  events there;
- every `POLL_S` while no link is live (Slack refusing links with too_many_websockets, Socket Mode down): then
  the history is the bot's only ear. The governor spaces the calls at the methods' tiers.
Those after a start or a return read the whole window (deep), and so does a periodic one at least every
`DEEP_EVERY_S`; the others read since each conversation's mark (a reply under a parent older than the mark is
found only by a deep scan: `conversations.history` lists threads by their parents).

Scans never overlap (one task), and in a cluster one replica scans at a time (the coordinator's lease, renewed
while scanning). Every call goes through the bot's own governed client, on a thread (it blocks). A scan that fails
is said in one line (once per streak of failures) and tried again at the next turn; it never spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError

from nonstop.aio import in_daemon_thread
from nonstop.catchup.core import Call, Scan, readable_kinds
from nonstop.config.settings import SupervisorSettings
from nonstop.ledger.base import LedgerError
from nonstop.status import Telemetry
from nonstop.status.snapshot import CatchUpView, LinksView

__all__ = ["LEASE", "POLL_S", "CatchUp", "Injector", "Marks"]

log = logging.getLogger("nonstop.catchup")

POLL_S = 3.0
"""Between scans while no link is live, and how long a start waits for the links before its first scan."""
DOUBT_S = 15.0
"""Between scans while links are live but Slack still counts dead sockets of this process: it may route events
there, and give up on them after its retries, so they are looked for every few seconds instead of every period
(Tier 3 allows 50+ reads a minute per method: a scan every 15 s of a few conversations stays well within it)."""
DEEP_GAP_S = 60.0
"""Deep scans (the whole window) at most this often: links that flap call for one each time they come back, and
a deep scan reads every thread active in the window; the scans between read since the marks."""
DEEP_EVERY_S = 600.0
"""A periodic scan reads the whole window at least this often, so a mention Slack dropped in a thread under an
older parent (within the window) is answered within about this long while the links stay up. A deep scan reads
every thread active in the window: at the default period, one scan in five."""
LEASE = "catch-up"
RATELIMITED_TRIES = 5
"""A call answered 429 is tried again after Slack's Retry-After (the governor waits it out), this many times."""


CALL_THREAD = "catch-up-call"


def _not_from_catch_up(record: logging.LogRecord) -> bool:
    """slack_sdk logs every failed request itself; catch-up says its failures once per streak (a poll every 3 s
    during an outage would repeat the client's line every 3 s)."""
    return record.threadName != CALL_THREAD


class Injector(Protocol):
    """Where recovered events go (`nonstop.pipeline.driver.PipelineDriver`)."""

    async def inject(self, envelopes: list[dict[str, Any]]) -> list[str]:
        """Run these events as if delivered; "new", "duplicate" or "refused" for each."""
        ...


class Marks(Protocol):
    """Each conversation's high-water mark (`nonstop.ledger.Ledger`)."""

    async def marks(self) -> dict[str, str]: ...

    async def advance_marks(self, marks: dict[str, str]) -> None: ...


class Lead(Protocol):
    """The lease that lets one replica scan (`nonstop.coordination.Coordinator`)."""

    async def lead(self, name: str, ttl_s: float) -> bool: ...

    async def step_down(self, name: str) -> None: ...


class CatchUp:
    """Args:
    settings: the supervisor's (NONSTOP_CATCH_UP, _WINDOW, _PERIOD).
    client: the app's `GovernedWebClient` (its `outbound.scopes` says what the token may read).
    marks: the ledger.
    injector: the pipeline driver.
    lead: the coordinator.
    telemetry: where status reads what catch-up does.
    answered: the ts the bot's replies among some messages answer (`nonstop.outbound.marks.answered_ts`).
    """

    def __init__(
        self,
        settings: SupervisorSettings,
        *,
        client: Any,
        marks: Marks,
        injector: Injector,
        lead: Lead,
        telemetry: Telemetry,
        answered: Callable[[list[dict[str, Any]]], set[str]],
    ) -> None:
        self._settings = settings
        self._client = client
        self._marks = marks
        self._injector = injector
        self._lead = lead
        self._telemetry = telemetry
        self._answered = answered
        self._healthy = False  # a live link that is not suspect
        self._doubtful = False  # Slack counts dead sockets of this process (events may go there)
        self._deep_due = True
        self._scanned_at = time.monotonic()
        self._deaf_since = time.monotonic()
        self._deep_at = -DEEP_GAP_S
        self._now_due = False
        self._wake = asyncio.Event()
        self._failing = False
        self._identity: dict[str, Any] = {}
        self.view = CatchUpView("starting")
        client_log = getattr(client, "logger", None)
        if isinstance(client_log, logging.Logger) and _not_from_catch_up not in client_log.filters:
            client_log.addFilter(_not_from_catch_up)

    # -- the links ----------------------------------------------------------------------------------

    def on_view(self, view: LinksView) -> None:
        """The link pool published a view (on the loop's thread): deaf or hearing again."""
        healthy = view.live - view.suspect > 0
        doubtful = view.own_dead > 0
        if doubtful != self._doubtful:
            self._doubtful = doubtful
            self._wake.set()
        if healthy == self._healthy:
            return
        self._healthy = healthy
        if healthy:
            # What was sent while no link was live is only in the history now: a scan at once, and a deep one
            # (threads under older parents too) as soon as DEEP_GAP_S allows.
            self._now_due = self._deep_due = True
        else:
            self._deaf_since = time.monotonic()
        self._wake.set()

    # -- running ------------------------------------------------------------------------------------

    def off_reason(self) -> str | None:
        """Why catch-up cannot run, in words; None when it can."""
        if not self._settings.catch_up:
            return "NONSTOP_CATCH_UP=off"
        scopes = getattr(getattr(self._client, "outbound", None), "scopes", None)
        if scopes is None:
            return "the app's client is not Nonstop's governed client (nonstop.startup.build_app makes one)"
        granted = scopes.granted or frozenset()
        if not readable_kinds(granted):
            return "history scopes without the read scopes" if scopes.history else "no history scopes"
        return None

    async def run(self) -> None:
        """Scan at start, when links come back, periodically and while deaf; until cancelled."""
        await self._know_scopes()
        why = self.off_reason()
        if why is not None:
            self._say_off(why)
            if not why.endswith("scopes"):
                return
            await self._scopes_granted()  # a reinstall with the scopes: every answer names them, no restart needed
        self._show(replace(self.view, mode="periodic"))
        s = self._settings
        log.info(
            "catch-up on (%s): mentions Slack never delivers are found in the last %s of history; scans at start, "
            "when links come back, every %g s, and every %g s while no link is live",
            ", ".join(readable_kinds(self._client.outbound.scopes.granted or ())),
            _span(s.catch_up_window_s),
            s.catch_up_period_s,
            POLL_S,
        )
        try:
            await self._wait_for_links()
            while True:
                now = time.monotonic()
                owed = self._deep_due or now >= self._deep_at + DEEP_EVERY_S
                deep = owed and now >= self._deep_at + DEEP_GAP_S
                if deep:
                    self._deep_due, self._deep_at = False, time.monotonic()
                self._now_due = False
                await self._turn(deep)
                self._scanned_at = time.monotonic()
                await self._pause()
        finally:
            await asyncio.shield(self._lead.step_down(LEASE))

    async def _know_scopes(self) -> None:
        """Slack names the token's scopes in every answer: ask once (auth.test) if none was seen yet."""
        scopes = getattr(getattr(self._client, "outbound", None), "scopes", None)
        if self._settings.catch_up and scopes is not None and scopes.granted is None:
            try:
                self._identity = dict((await self._call("auth.test")).data)
            except (SlackApiError, OSError) as e:
                log.warning("catch-up could not learn the token's scopes (%s): it stays off until restarted", _short(e))

    async def _scopes_granted(self) -> None:
        """Until the token's scopes (as Slack's answers name them) let catch-up read."""
        loop, changed = asyncio.get_running_loop(), asyncio.Event()

        def on_change(_granted: frozenset[str]) -> None:  # on whichever thread made the call
            with contextlib.suppress(RuntimeError):  # the loop closed: stopped anyway
                loop.call_soon_threadsafe(changed.set)

        self._client.outbound.scopes.on_change(on_change)
        while self.off_reason() is not None:
            changed.clear()
            await changed.wait()

    def _say_off(self, why: str) -> None:
        self._show(CatchUpView("off", reason=why))
        if why.endswith("scopes"):
            log.warning(
                "catch-up is off: the bot token has %s, so a mention Slack never delivers (an "
                "outage, an incident, the bot stopped or refused connections) is never answered. To turn it on, add "
                "channels:history and channels:read (groups:, im:, mpim: for private channels and DMs) to the bot "
                "scopes in manifest.yml, then reinstall the app",
                why,
            )
        else:
            log.info("catch-up is off: %s", why)

    async def _wait_for_links(self) -> None:
        deadline = time.monotonic() + POLL_S
        while not self._healthy and (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                break

    def _next_due(self) -> float:
        """When the next scan is due (monotonic): after the links came back, a deep one (at most every DEEP_GAP_S);
        while no link is live, `POLL_S` after the last scan (and after the links went); else after the period."""
        if self._now_due:
            return time.monotonic()
        if self._healthy:
            every = (
                min(DOUBT_S, self._settings.catch_up_period_s) if self._doubtful else self._settings.catch_up_period_s
            )
            due = self._scanned_at + every
        else:
            due = max(self._scanned_at, self._deaf_since) + POLL_S
        return min(due, self._deep_at + DEEP_GAP_S) if self._deep_due else due

    async def _pause(self) -> None:
        """Until the next scan is due; a change of the links' health looks again."""
        while (left := self._next_due() - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return

    async def _turn(self, deep: bool) -> None:
        polling = not self._healthy
        try:
            if not await self._lead.lead(LEASE, self._lease_s):
                self._show(replace(self.view, mode="standby"))
                return
            self._show(replace(self.view, mode="polling" if polling else "periodic"))
            recovered = await self.scan(deep=deep)
        except Exception as e:  # one line per streak, tried again next turn: never a hot loop or a traceback storm
            self._failed(e)
            self._deep_due = self._deep_due or deep  # a deep scan that failed is still owed
            return
        self._show(replace(self.view, last_scan_at=time.time(), recovered=self.view.recovered + recovered,
                           scans=self.view.scans + 1, mode="polling" if not self._healthy else "periodic"))  # fmt: skip

    def _failed(self, error: BaseException) -> None:
        self._show(replace(self.view, failed_scans=self.view.failed_scans + 1))
        if not self._failing:
            self._failing = True
            wait = POLL_S if not self._healthy else self._settings.catch_up_period_s
            expected = isinstance(error, SlackApiError | OSError | LedgerError | RuntimeError)
            log.warning(
                "catch-up could not read Slack's history (%s); trying again in %g s",
                _short(error),
                wait,
                exc_info=None if expected else error,
            )

    @property
    def _lease_s(self) -> float:
        return max(30.0, 3 * POLL_S)

    # -- one scan -----------------------------------------------------------------------------------

    async def scan(self, *, deep: bool) -> int:
        """One scan: read, inject what was not answered, advance the marks. Returns how many mentions ran (new)."""
        if not self._identity:
            self._identity = dict((await self._call("auth.test")).data)
        scopes = self._client.outbound.scopes
        scan = Scan(
            bot_user_id=str(self._identity.get("user_id", "")),
            bot_id=self._identity.get("bot_id"),
            team_id=str(self._identity.get("team_id", "")),
            app_id=self._identity.get("app_id"),
            marks=await self._marks.marks(),
            window_s=self._settings.catch_up_window_s,
            now=time.time(),
            kinds=readable_kinds(scopes.granted or ()),
            answered=self._answered,
            deep=deep,
        )
        renewed = time.monotonic()
        while (call := scan.next_call()) is not None:
            scan.answer(call, await self._read(call))
            if time.monotonic() - renewed > self._lease_s / 3:
                if not await self._lead.lead(LEASE, self._lease_s):
                    raise RuntimeError("another replica took the catch-up lease over mid-scan")
                renewed = time.monotonic()
        mentions = scan.mentions()
        outcomes = await self._injector.inject([m.envelope for m in mentions]) if mentions else []
        by_key = {m.key: outcome for m, outcome in zip(mentions, outcomes, strict=False)}
        await self._marks.advance_marks(scan.marks(by_key))
        new = sum(1 for outcome in outcomes if outcome == "new")
        refused = sum(1 for outcome in outcomes if outcome == "refused")
        if new or refused or scan.errors:
            log.info(
                "catch-up (%s scan, %d conversation(s), %d call(s)): %d mention(s) Slack never delivered now "
                "answered%s%s",
                "deep" if deep else "shallow",
                scan.conversations,
                scan.calls_made,
                new,
                f", {refused} refused (backlog full; next scan)" if refused else "",
                f"; not read: {', '.join(scan.errors[:5])}" if scan.errors else "",
            )
        return new

    async def _read(self, call: Call) -> dict[str, Any]:
        """Slack's answer to `call` (its body, ok or not); raises when there is none (network, HTTP 5xx)."""
        for _ in range(RATELIMITED_TRIES):
            try:
                response = await self._call(call.method, http_verb="GET", params=call.params)
                if self._failing:
                    log.info("catch-up reads Slack's history again")
                    self._failing = False
                return dict(response.data) if isinstance(response.data, dict) else {"ok": False}
            except SlackApiError as e:
                data = e.response.data if isinstance(e.response.data, dict) else None
                if e.response.status_code == 429:
                    continue  # the governor learned Slack's Retry-After: the next try waits it out
                if data is None or e.response.status_code >= 500:
                    raise
                return dict(data)
        return {"ok": False, "error": "ratelimited"}

    async def _call(self, method: str, **kwargs: Any) -> Any:
        """One Web API call through the app's client (it blocks: the governor may make it wait its turn)."""
        return await in_daemon_thread(lambda: self._client.api_call(method, **kwargs), CALL_THREAD)

    def _show(self, view: CatchUpView) -> None:
        self.view = view
        self._telemetry.set_catch_up(view)


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


def _short(error: BaseException) -> str:
    if isinstance(error, SlackApiError):
        data = error.response.data if isinstance(error.response.data, dict) else {}
        return f"{data.get('error') or 'HTTP ' + str(error.response.status_code)}"
    return f"{type(error).__name__}: {error}"[:200]
