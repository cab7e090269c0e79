"""The supervisor: keep N live Socket Mode links, forever, and stop only when told or when retrying is futile.

One asyncio loop owns every link, timer and retry; Bolt's listeners run on threads (see `dispatch`).
Each of the N slots loops: get a link live (ticket → handshake → hello), wait until it ends or Slack
asks for a refresh, then replace it — at once after a healthy link dies, with backoff after failures,
make-before-break on refresh and on a link that turns *suspect* (silent for a few seconds: it may be
dead, or only slow). Connection attempts go through one gate (`nonstop.links.gate`), so links are replaced
one at a time and an outage costs Slack about one attempt per wait, however many links are wanted.

Spare links: Slack routes envelopes and retries to every connection it believes alive, including dead
sockets it has not noticed (that can take many minutes). While Slack counts more connections than
this process holds live — suspect links, or dead ones it has let go — the supervisor fills Slack's
budget with spare live links, so most of what Slack sends lands on a live one; once a fresh `hello`
shows Slack counts nothing dead any more, the spares are closed. Every link counts against the budget
in one place, `Supervisor._room` (`nonstop.links.budget`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from nonstop.bolt.runner import BoltRunner, FailureReply
from nonstop.config.settings import SupervisorSettings
from nonstop.coordination.cluster import ClusterShare, LocalShare, Share
from nonstop.errors import EX_CONFIG
from nonstop.humanize import human_duration
from nonstop.ledger import Ledger, LedgerError, Recovered, RedisLedger, open_ledger
from nonstop.links.budget import Budget
from nonstop.links.gate import ConnectGate
from nonstop.links.link import Link, LinkEnd, LinkFailed
from nonstop.links.tickets import TicketRefused, open_ticket
from nonstop.net.retry import DEAD_TOKEN_ERRORS, Backoff, fatal_message, is_fatal
from nonstop.pipeline.core import EventPipeline
from nonstop.pipeline.driver import PipelineDriver
from nonstop.status import Drop, Telemetry
from nonstop.status.state import State
from nonstop.webclient import InstrumentedWebClient

log = logging.getLogger("nonstop.supervisor")
_QUIET = logging.getLogger("nonstop.supervisor.tickets")
_QUIET.setLevel(logging.CRITICAL)


class Supervisor:
    def __init__(
        self,
        app: App,
        app_token: str,
        *,
        settings: SupervisorSettings,
        telemetry: Telemetry,
        ticket_client: WebClient | None = None,
        rng: random.Random | None = None,
        failure_reply: FailureReply | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self._app = app
        self._app_token = app_token
        self._settings = settings
        self._failure_reply = failure_reply
        self._ledger = ledger or open_ledger(
            settings.ledger_url, settings.dedup_ttl_s, lease_s=settings.lease_s, replica=settings.replica_name or None
        )
        self._share: Share = LocalShare(settings.connections)
        self._telemetry = telemetry
        telemetry.target_connections = settings.connections
        telemetry.stale_after_s = settings.stale_after_s  # readiness judges freshness by the same limit
        # A client of our own for tickets: short timeout, no hidden retries (the policy lives here).
        base = app.client
        self._tickets = ticket_client or WebClient(
            base_url=base.base_url,
            timeout=int(max(1, settings.connect_timeout_s)),
            ssl=base.ssl,  # the same CAs and proxy as every other connection (nonstop.net.network)
            proxy=base.proxy,
            retry_handlers=[],
            logger=_QUIET,  # failures are logged once, by the retry policy, with what happens next
        )
        self._backoff = Backoff(settings.retry_schedule, rng or random.Random())
        self._links: set[Link] = set()
        self._budget = Budget(settings.connection_limit)
        self._spares: set[Link] = set()  # links beyond the slots': spare ones and suspects handed over
        self._spare_names = 0
        self._opening = 0  # attempts under way (they count against the budget too)
        self._slack_counted: int | None = None  # num_connections in the latest hello
        self._unaccounted = 0  # connections Slack counted at that hello that this process does not hold
        self._last_spare_check = 0.0
        self._rebalance: asyncio.Event | None = None
        self._exit_code = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._gate: ConnectGate | None = None
        self._runner: BoltRunner | None = None
        self._pipeline: EventPipeline | None = None
        self._driver: PipelineDriver | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_asked: str | None = None  # request_stop() before run(): honoured as soon as it starts
        self._loop_lock = threading.Lock()  # request_stop() from another thread vs run() taking the loop
        self.drained = True

    # -- public ------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until `request_stop()` or a fatal error; return the process exit code (0 or 78)."""
        with self._loop_lock:
            self._loop = asyncio.get_running_loop()
            stop_asked = self._stop_asked
        self._stop_event = asyncio.Event()
        self._gate = ConnectGate()
        self._rebalance = asyncio.Event()
        loop = self._loop
        try:
            recovered = await self._ledger.open()
        except LedgerError as e:
            log.critical("cannot use the event ledger (NONSTOP_LEDGER=%s): %s", self._ledger.url, e)
            self._telemetry.set_state(State.FATAL, "ledger")
            return EX_CONFIG
        self._runner = BoltRunner(
            self._app,
            event_threads=self._settings.handler_threads,
            command_threads=self._settings.command_threads,
            telemetry=self._telemetry,
            handler_nice=self._settings.handler_nice,
            failure_reply=self._failure_reply,
        )
        self._pipeline = EventPipeline(
            max_backlog=self._settings.max_backlog,
            dedup_ttl_s=self._settings.dedup_ttl_s,
            durable=self._ledger.durable,
            observer=self._telemetry,
        )
        self._driver = PipelineDriver(self._pipeline, ledger=self._ledger, runner=self._runner, acks=self)
        self._recover(recovered)
        if isinstance(self._ledger, RedisLedger):
            self._share = ClusterShare(
                self._ledger, name=self._ledger.replica, wish=self._settings.connections, telemetry=self._telemetry
            )
            self._ledger.on_reachability(lambda _reachable: self._update_state())
            await self._share.beat()
            log.info(
                "cluster mode on %s as replica %s: this replica may hold %d of Slack's %d connections now",
                self._ledger.url,
                self._ledger.replica,
                self._share.allowed,
                self._share.limit,
            )
        unwatch = self._watch_bot_calls(loop)
        self._update_state()
        if stop_asked is not None:
            self._begin_stop(stop_asked)
        slots = [asyncio.create_task(self._slot(i), name=f"slot-{i + 1}") for i in range(self._settings.connections)]
        heartbeat = asyncio.create_task(self._pulse(), name="pulse")
        housekeeping = asyncio.create_task(self._housekeeping(), name="ledger-housekeeping")
        spares = asyncio.create_task(self._keep_spares(), name="spares")
        claims = asyncio.create_task(self._keep_claims(), name="ledger-claims")
        await self._stop_event.wait()
        unwatch()
        await self._shutdown([*slots, heartbeat, housekeeping, spares, claims])
        return self._exit_code

    def _recover(
        self, recovered: Recovered, source: str = "were acked but never finished before the last stop"
    ) -> None:
        assert self._driver is not None
        self._driver.replay(recovered, source)

    async def _housekeeping(self) -> None:
        """Forget done events once Slack can no longer retry them, so the ledger stays small."""
        interval = max(1.0, min(60.0, self._settings.dedup_ttl_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self._ledger.prune()
            except LedgerError as e:
                log.warning("could not prune the event ledger: %s", e)

    async def _keep_claims(self) -> None:
        """Every third of a lease: say this replica is alive (membership and its share of Slack's budget),
        renew the claims on the events running here, and take over those of replicas that died. A
        ledger of one process has no claims and no replicas: then this returns at once, since a timer
        that wakes an idle bot every few seconds for nothing costs idle CPU (bench/)."""
        if not isinstance(self._ledger, RedisLedger):
            return
        interval = self._settings.lease_s / 3
        assert self._pipeline is not None
        while True:
            await asyncio.sleep(interval)
            try:
                if isinstance(self._share, ClusterShare):
                    await self._share.beat()
                    if self._spares and self._share.others_short() > 0:
                        self._wake_spares()  # a replica is owed links this one holds as spares
                await self._ledger.renew(self._pipeline.unfinished())
                if not self._stopping:
                    taken = await self._ledger.takeover()
                    if taken.unfinished or taken.given_up:
                        self._recover(taken, "another replica acked and could not finish (it stopped or died)")
            except LedgerError as e:
                log.warning("could not renew or take over event claims: %s", e)
            except Exception:  # a bug here must not stop the renewals: others would run our events twice
                log.exception("renewing this replica's claims failed unexpectedly; trying again in %.1f s", interval)

    def _watch_bot_calls(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """A bot that can no longer post is as deaf as one that cannot connect: when Slack answers any
        of its Web API calls (listeners' included) with "this token is dead", say so and stop. Needs
        the App's client to be an `InstrumentedWebClient` (as `nonstop.startup.build_app` makes it)."""
        client = self._app.client
        if not isinstance(client, InstrumentedWebClient):
            return lambda: None

        def on_call(_method: str, outcome: str) -> None:  # on whichever thread made the call
            if outcome in DEAD_TOKEN_ERRORS:
                with contextlib.suppress(RuntimeError):  # the loop is already closed: stopped anyway
                    loop.call_soon_threadsafe(self._fatal, outcome, "bot")

        return client.calls.watch(on_call)

    def request_stop(self, why: str = "stop requested") -> None:
        """Thread-safe: begin a graceful stop (drain, close, exit 0)."""
        with self._loop_lock:
            if self._loop is None:
                self._stop_asked = why
                return
        with contextlib.suppress(RuntimeError):  # the loop closed in between: already stopped
            self._loop.call_soon_threadsafe(self._begin_stop, why)

    @property
    def stopping(self) -> bool:
        return self._stopping or self._stop_asked is not None

    @property
    def settings(self) -> SupervisorSettings:
        return self._settings

    # -- slots -------------------------------------------------------------------------------------

    async def _slot(self, index: int) -> None:
        name = f"connection #{index + 1}"
        while not self._stopping:
            if index >= self._share.allowed:  # past this replica's share of Slack's budget: wait for more
                await self._share.changed.wait()
                continue
            try:
                await self._keep_one(name, index)
            except Exception:  # a bug in here must not leave the bot with one link less, forever
                delay = self._backoff.failure()
                log.exception("%s: supervisor slot failed unexpectedly; restarting it in %.1f s", name, delay)
                await self._sleep(delay)

    async def _keep_one(self, name: str, index: int = 0) -> None:
        link = await self._establish(name, first_delay=0.0)
        while link is not None and not self._stopping:
            if index >= self._share.allowed:  # the share shrank (more replicas), maybe while this one connected
                log.info(
                    "%s: closing it, this replica's share of Slack's %d connections is now %d (more replicas)",
                    name,
                    self._budget.limit,
                    self._share.allowed,
                )
                end = LinkEnd("trimmed", "the cluster's connection budget moved to another replica")
                await link.close(end)
                self._forget(link, end)
                return
            refresh = asyncio.create_task(link.refresh_requested.wait())
            suspect = asyncio.create_task(link.suspected.wait())
            share_changed = asyncio.create_task(self._share.changed.wait())
            try:
                await asyncio.wait({link.ended, refresh, suspect, share_changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                refresh.cancel()
                suspect.cancel()
                share_changed.cancel()
            if self._stopping:
                return
            if link.ended.done():
                delay = self._after_drop(link, link.ended.result())
                link = await self._establish(name, first_delay=delay)
            elif link.refresh_requested.is_set():
                log.info("%s: opening its replacement before letting it go (make before break)", name)
                old = link
                await self._make_room()
                link = await self._establish(name, first_delay=0.0)
                self._background(self._retire(old))
            elif link.suspected.is_set():
                log.warning(
                    "%s: no frame from Slack for %.1f s; opening its replacement now and keeping this one "
                    "until it is known dead (it may only be slow)",
                    name,
                    time.monotonic() - link.last_inbound,
                    extra={"connection": name, "cause": "suspect"},
                )
                self._adopt(link)  # watched from now on as an extra link: closed once dead, kept if heard from
                await self._make_room()
                link = await self._establish(name, first_delay=0.0)

    async def _establish(self, name: str, first_delay: float, *, spare: bool = False) -> Link | None:
        """Get one live link, retrying forever on transient failures. None when stopping or fatal.

        A `spare` link is tried once, and only while the budget has room: a spare is never worth a
        wait of its own (the gate still spaces attempts after a failure). Each attempt first reserves
        a connection of Slack's budget with this process's share (`nonstop.coordination.cluster`): among replicas,
        atomically against what all of them hold."""
        assert self._gate is not None
        if first_delay > 0:
            self._gate.hold_off(first_delay)
        while True:
            if self._stopping:
                return None
            if not await self._share.acquire():
                if spare:
                    return None
                # Held elsewhere: a link of ours being closed, or another replica's (seen through Redis).
                await self._share.wait_for_room(max(0.1, self._settings.lease_s / 6))
                continue
            opened = False
            try:
                link = await self._attempt_in_turn(name, spare)
                opened = link is not None
                if link is not None or self._stopping or self._exit_code:
                    return link
            finally:
                if not opened:  # the reservation goes back; the next attempt asks again
                    self._share.release()
            if spare:
                return None

    async def _attempt_in_turn(self, name: str, spare: bool) -> Link | None:
        """One attempt, in the connect gate's turn. None when it failed (the gate holds the next one
        off as long as the policy says), when stopping, or when a spare no longer has room."""
        assert self._gate is not None
        delay = 0.0
        async with self._gate.turn(self._sleep, lambda: self._stopping):
            if self._stopping or (spare and self._room() <= 0):
                return None
            self._update_state(connecting=True)
            self._opening += 1
            try:
                link = await self._attempt(name)
                self._telemetry.attempt("ok")
                return link
            except TicketRefused as e:
                self._telemetry.attempt(e.cause)
                if e.fatal:
                    self._fatal(e.cause, detail=e.detail)
                    return None
                if e.retry_after_s is not None:
                    delay = self._backoff.rate_limited(e.retry_after_s)
                    log.warning(
                        "%s: Slack %s; retrying in exactly %.1f s as asked",
                        name,
                        e.detail,
                        delay,
                        extra={"connection": name, "cause": e.cause, "retry_in_s": round(delay, 3)},
                    )
                else:
                    delay = self._backoff.failure()
                    log.warning(
                        "%s: could not get a Socket Mode URL (%s); retrying in %.1f s",
                        name,
                        e,
                        delay,
                        extra={"connection": name, "cause": e.cause, "retry_in_s": round(delay, 3)},
                    )
            except LinkFailed as e:
                self._telemetry.attempt(e.cause)
                if is_fatal(e.cause):  # link_disabled, a certificate or proxy login (nonstop.net.network)
                    self._fatal(e.cause, detail=e.detail)
                    return None
                if e.cause == "too_many_websockets":  # Slack counts more than we thought: no room left
                    self._unaccounted = max(
                        self._unaccounted, self._budget.limit - len(self._links) - self._share.others_held()
                    )
                delay = self._backoff.failure()
                log.warning(
                    "%s: connection failed (%s: %s); retrying in %.1f s",
                    name,
                    e.cause,
                    e.detail,
                    delay,
                    extra={"connection": name, "cause": e.cause, "retry_in_s": round(delay, 3)},
                )
            finally:
                self._opening -= 1
            self._gate.hold_off(delay)
            self._update_state(backing_off=delay)
        return None

    async def _attempt(self, name: str) -> Link:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            url = await asyncio.wait_for(
                loop.run_in_executor(None, open_ticket, self._tickets, self._app_token),
                self._settings.connect_timeout_s + 1,
            )
        except TimeoutError:
            raise LinkFailed("connect_timeout", "apps.connections.open did not answer in time") from None
        remaining = max(0.5, self._settings.connect_timeout_s - (time.monotonic() - started))
        assert self._driver is not None
        link = Link(
            f"{name}",
            url,
            on_envelope=self._driver.receive,
            ping_interval_s=self._settings.ping_interval_s,
            stale_after_s=self._settings.stale_after_s,
            pong_timeout_s=self._settings.pong_timeout_s,
            on_suspect=self._on_suspect,
            on_inbound=self._telemetry.inbound,
            on_rtt=self._telemetry.rtt,
            max_frame_bytes=self._settings.max_frame_bytes,
        )
        await link.open(remaining)
        self._links.add(link)
        self._count_hello(link)
        link.ping()  # the first round trip now, not at the next pulse
        self._telemetry.connection_up()
        loop.call_later(self._settings.healthy_after_s, self._healthy, link)
        log.info(
            "%s: connected in %.0f ms (Slack reports %s connection(s) for this app)",
            name,
            (time.monotonic() - started) * 1000,
            link.hello.get("num_connections", "?"),
            extra={"connection": name},
        )
        self._update_state()
        return link

    def _healthy(self, link: Link) -> None:
        if link.is_open and self._backoff.in_trouble:
            log.info("%s: healthy for %s; backoff reset", link.name, human_duration(link.age_s, tenths=True))
            self._backoff.reset()

    def _after_drop(self, link: Link, end: LinkEnd) -> float:
        """Account for a link that died on its own; return how long to wait before replacing it."""
        self._forget(link, end)
        if end.cause == "link_disabled":
            self._fatal("link_disabled")
            return 0.0
        if end.cause == "half_open":
            self._unaccounted += 1  # the path is dead: Slack has not noticed either, and still counts it
        if end.cause == "too_many_websockets":
            delay = self._backoff.failure()
        else:
            delay = self._backoff.dropped(healthy=link.age_s >= self._settings.healthy_after_s)
        others = sum(1 for other in self._links if other.is_open)
        log.warning(
            "%s dropped after %s: %s; %s (%d other connection(s) still live)",
            link.name,
            human_duration(link.age_s, tenths=True),
            end.explanation,
            "reconnecting now" if delay == 0 else f"reconnecting in {delay:.1f} s",
            others,
            extra={"connection": link.name, "cause": end.cause, "close_code": end.code, "retry_in_s": round(delay, 3)},
        )
        self._update_state(backing_off=delay if others == 0 and delay > 0 else None)
        return delay

    # -- suspects and spare links ------------------------------------------------------------------

    def _room(self) -> int:
        """How many more connections this process may open now without Slack counting more than its
        budget: what it holds or is opening, plus what Slack counts that it does not hold."""
        held = len(self._links) + self._opening + self._share.others_held()  # replicas: theirs count too
        return self._budget.room(held, self._unaccounted)

    def _live(self) -> list[Link]:
        return [link for link in self._links if link.is_open and not link.suspect]

    def _count_hello(self, link: Link) -> None:
        """Slack's own count, from the hello just received: which connections does it believe alive
        that this process does not hold (its dead sockets, or another process's)?"""
        reported = link.hello.get("num_connections")
        if isinstance(reported, int) and not isinstance(reported, bool):
            self._slack_counted = reported
            # Among replicas, the others' links are no dead ones of ours: only what nobody holds is.
            self._unaccounted = max(0, reported - len(self._links) - self._share.others_held())
            self._share.hello(reported)
        self._wake_spares()

    def _on_suspect(self, link: Link, suspect: bool) -> None:
        if not suspect:
            log.info(
                "%s: heard from again after %.1f s of silence; kept as a spare while it is needed",
                link.name,
                time.monotonic() - (link.suspect_since or link.last_inbound),
                extra={"connection": link.name, "cause": "suspect_cleared"},
            )
        self._update_state()
        self._wake_spares()

    def _wake_spares(self) -> None:
        if self._rebalance is not None:
            self._rebalance.set()

    def _adopt(self, link: Link) -> None:
        """Watch `link` as an extra: a spare, or a suspect handed over by its slot."""
        self._spares.add(link)
        self._background(self._watch_extra(link))
        self._update_state()

    async def _watch_extra(self, link: Link) -> None:
        refresh = asyncio.create_task(link.refresh_requested.wait())
        try:
            await asyncio.wait({link.ended, refresh}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refresh.cancel()
        if link.ended.done():
            end = link.ended.result()
            if end.cause == "half_open":
                self._unaccounted += 1  # dead path: Slack still counts it until it notices
            self._forget(link, end)
            if end.cause not in ("shutdown", "spare_released", "refresh"):
                log.warning(
                    "%s dropped after %s: %s; %s",
                    link.name,
                    human_duration(link.age_s, tenths=True),
                    end.explanation,
                    "already replaced" if link.suspect_since is not None else "a spare less",
                    extra={"connection": link.name, "cause": end.cause, "close_code": end.code},
                )
        else:
            await self._retire(link)
        self._spares.discard(link)
        self._wake_spares()

    async def _make_room(self) -> None:
        """Before a make-before-break: if the budget is full, let a live spare go first."""
        if self._room() > 0:
            return
        spare = next((link for link in self._spares if link.is_open and not link.suspect), None)
        if spare is not None:
            await self._release(spare, "making room within Slack's connection budget")

    async def _release(self, link: Link, why: str) -> None:
        self._spares.discard(link)
        end = LinkEnd("spare_released", f"spare link closed: {why}")
        await link.close(end)
        self._forget(link, end)
        log.info("%s: closed (%s)", link.name, why, extra={"connection": link.name, "cause": "spare_released"})

    async def _keep_spares(self) -> None:
        """Hold spare live links while Slack counts more connections than this process holds live."""
        assert self._rebalance is not None
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rebalance.wait(), self._settings.spare_check_s)
            self._rebalance.clear()
            if self._stopping:
                return
            try:
                await self._balance_spares()
            except Exception:  # a bug here must not stop the slots; try again on the next wake
                log.exception("spare links: rebalancing failed unexpectedly")
                await self._sleep(1.0)

    async def _balance_spares(self) -> None:
        target = self._settings.connections
        doubtful = len(self._links) + self._unaccounted - len(self._live())  # suspects + dead ones Slack counts
        wanted = self._budget.live_wanted(target, doubtful, self._share.others_held())  # why: nonstop/links/budget.py
        if self._share.others_short() > 0:  # other replicas are owed links: spares give way to them first
            wanted = target
        for spare in [link for link in self._spares if link.is_open and not link.suspect]:
            if len(self._live()) <= wanted:
                break
            why = (
                "Slack counts no dead connection any more"
                if doubtful == 0
                else "no more spares than the dead connections call for, with room kept for a next silence"
            )
            await self._release(spare, why)
        if doubtful == 0 or len(self._live()) < target:
            self._update_state()
            return  # nothing dead to outnumber; or the slots come first, and they wake this as they connect
        now = time.monotonic()
        suspects = any(link.suspect for link in self._links)
        if not suspects and self._unaccounted > 0 and now - self._last_spare_check >= self._settings.spare_check_s:
            # Only a fresh hello says whether Slack still counts the dead: swap one spare for a new one.
            self._last_spare_check = now
            spare = next((link for link in self._spares if link.is_open and not link.suspect), None)
            if spare is not None:
                await self._release(spare, "checking whether Slack still counts dead connections")
        opened = 0
        while not self._stopping and self._room() - self._share.others_short() > 0 and len(self._live()) < wanted:
            self._spare_names += 1
            link = await self._establish(f"spare #{self._spare_names}", 0.0, spare=True)
            if link is None:
                break
            opened += 1
            self._adopt(link)
        if opened:
            log.info(
                "holding %d spare connection(s): Slack counts %d connection(s) for this app, %d of them live here",
                max(0, len(self._live()) - target),
                len(self._links) + self._unaccounted,
                len(self._live()),
                extra={"cause": "spares"},
            )

    async def _retire(self, link: Link) -> None:
        reason = link.refresh_reason or "disconnect"
        end = LinkEnd("refresh", f"Slack asked for a refresh ({reason}); replaced make-before-break")
        await link.close(end)
        self._forget(link, end)
        log.info(
            "%s: old connection closed after %s (%s)",
            link.name,
            human_duration(link.age_s, tenths=True),
            reason,
            extra={"connection": link.name, "cause": "refresh", "reason": reason},
        )

    def _forget(self, link: Link, end: LinkEnd) -> None:
        if link in self._links:
            self._links.discard(link)
            self._share.release()
            self._telemetry.connection_down(
                Drop(
                    at=time.time(),
                    cause=end.cause,
                    explanation=end.explanation,
                    connection_age_s=link.age_s,
                    close_code=end.code,
                )
            )
        self._update_state()

    # -- acks --------------------------------------------------------------------------------------

    def send_ack(
        self, link: object, envelope_id: str, payload: dict[str, Any] | None, kind: str, received_at: float
    ) -> None:
        body: dict[str, Any] = {"envelope_id": envelope_id}
        if payload is not None:
            body["payload"] = payload
        text = json.dumps(body)

        def elsewhere(counted: bool = False) -> None:
            self._background(self._deliver(link, envelope_id, text, kind, received_at, counted=counted))

        if isinstance(link, Link) and link.send_soon(text, on_failure=lambda: elsewhere(counted=True)):
            self._telemetry.ack_sent(kind, time.monotonic() - received_at)
            return
        elsewhere()

    def flush(self) -> None:
        for link in self._links:
            link.flush()

    async def _deliver(
        self, first: object, envelope_id: str, text: str, kind: str, received_at: float, *, counted: bool = False
    ) -> None:
        # Slack matches acks on any of the app's connections: fall back to another live link.
        candidates = [first] if isinstance(first, Link) else []
        candidates += [link for link in self._links if link is not first]
        for link in candidates:
            if await link.send(text):
                if not counted:
                    self._telemetry.ack_sent(kind, time.monotonic() - received_at)
                return
        self._telemetry.envelope(kind, "ack_failed")
        log.warning(
            "could not ack envelope %s: no open connection; Slack will redeliver it",
            envelope_id,
            extra={"envelope_id": envelope_id},
        )

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    # -- stopping ----------------------------------------------------------------------------------

    def _fatal(self, code: str, token: str = "app", detail: str = "") -> None:
        if self._stopping:
            return
        self._exit_code = EX_CONFIG
        self._telemetry.set_state(State.FATAL, code)
        log.critical(fatal_message(code, token, detail) if is_fatal(code) else code, extra={"reason": code})
        self._begin_stop("fatal", keep_state=True)

    def _begin_stop(self, why: str, keep_state: bool = False) -> None:
        if self._stopping and self._stop_event is not None and self._stop_event.is_set():
            return
        self._stopping = True
        if not keep_state:
            self._telemetry.set_state(State.STOPPING)
        if why != "fatal":
            log.info("%s: stopping gracefully (no new envelopes; finishing in-flight work)", why)
        if self._stop_event is not None:
            self._stop_event.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        assert self._driver is not None
        assert self._runner is not None
        loop = asyncio.get_running_loop()
        in_flight = self._driver.backlog
        self._driver.stop_accepting()
        drained = await loop.run_in_executor(
            None,
            lambda: self._runner.stop_events(self._settings.drain_timeout_s, leave_queued=self._ledger.durable),  # type: ignore[union-attr]
        )
        self.drained = drained
        unfinished = await self._driver.settle()
        if not drained:
            log.warning(
                "in-flight handlers did not finish within %.1f s; exiting anyway", self._settings.drain_timeout_s
            )
        elif in_flight:
            log.info("finished %d in-flight envelope(s)", in_flight)
        if unfinished:
            ids = ", ".join(key.split(":", 1)[1] for key in unfinished[:20])
            more = f" and {len(unfinished) - 20} more" if len(unfinished) > 20 else ""
            if isinstance(self._ledger, RedisLedger):
                log.warning(
                    "%d acked event(s) did not finish here; handed over to the other replicas through Redis: %s%s",
                    len(unfinished),
                    ids,
                    more,
                )
            elif self._ledger.durable:
                log.warning(
                    "%d acked event(s) did not finish; they stay in the ledger and run again at the next start: %s%s",
                    len(unfinished),
                    ids,
                    more,
                )
            else:
                log.error(
                    "%d acked event(s) did not finish and are lost (NONSTOP_LEDGER=memory:// keeps nothing): %s%s",
                    len(unfinished),
                    ids,
                    more,
                )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        links = list(self._links)
        await asyncio.gather(*(link.close(LinkEnd("shutdown", "the bot is stopping")) for link in links))
        for link in links:
            self._forget(link, LinkEnd("shutdown", "the bot is stopping"))
        self._runner.close()  # interactions were taken until the links closed
        # Only now, with its links closed, may this replica's share of Slack's budget go to the others.
        if isinstance(self._share, ClusterShare):
            await self._share.leave()
        with contextlib.suppress(LedgerError):
            await self._ledger.close()
        log.info("stopped; closed %d connection(s)", len(links))

    async def _sleep(self, seconds: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    async def _pulse(self) -> None:
        """One timer for the whole process: every ping interval it pings every link and proves the
        loop is alive (/healthz); in between it wakes only if some link would turn stale sooner.

        A plain timer callback rather than a sleep in this task: a sleep's timer only wakes the task,
        one more loop iteration per pulse, and an idle bot does little but pulse (bench/: idle CPU).
        The task is what the supervisor starts and cancels; it fails if a pulse does."""
        loop = asyncio.get_running_loop()
        interval = self._settings.ping_interval_s
        failed: asyncio.Future[None] = loop.create_future()
        next_ping = time.monotonic()
        timer: asyncio.TimerHandle | None = None

        def beat() -> None:
            nonlocal next_ping, timer
            try:
                now = time.monotonic()
                ping = now >= next_ping
                if ping:
                    next_ping = now + interval
                    self._telemetry.beat()
                due = next_ping
                for link in list(self._links):
                    stale_at = link.pulse(now)
                    if stale_at is not None:
                        due = min(due, stale_at)
                        if ping:
                            link.ping()
                timer = loop.call_at(max(due, time.monotonic() + 0.01), beat)
            except Exception as e:  # the task fails with it, as it did when the pulse was its body
                if not failed.done():
                    failed.set_exception(e)

        beat()
        try:
            await failed
        finally:
            if timer is not None:
                timer.cancel()

    def _update_state(self, connecting: bool = False, backing_off: float | None = None) -> None:
        if self._stopping:
            return
        live = len(self._live())
        target = min(self._settings.connections, self._share.allowed)
        self._telemetry.target_connections = target
        suspect = sum(1 for link in self._links if link.is_open and link.suspect)
        spare = max(0, live - target)
        self._telemetry.links(spare=spare, suspect=suspect, slack_reported=self._slack_counted)
        if target == 0:
            self._telemetry.set_state(State.CONNECTING, "standby: no connection of Slack's budget is free")
        elif live >= target and (spare or suspect):
            counted = len(self._links) + self._unaccounted
            self._telemetry.set_state(
                State.CONNECTED,
                f"{target} connections + {spare} spare while Slack counts {counted}, "
                f"{counted - live} of them silent or dead",
            )
        elif live >= target:
            self._telemetry.set_state(State.CONNECTED)
        elif live > 0:
            self._telemetry.set_state(State.DEGRADED, f"{live} of {target} connections")
        elif backing_off and not connecting:
            self._telemetry.set_state(State.BACKING_OFF, f"waiting {backing_off:.1f} s before the next attempt")
        else:
            self._telemetry.set_state(State.CONNECTING)
