"""`LinkPool`: the Socket Mode links this process holds, kept alive, and the one way acks go out.

The pool keeps `target` live links forever (`nonstop.links.slots`: each slot replaces its link the moment
it dies, make-before-break on a refresh or a suspect link; spare links while Slack counts dead ones), gets
each one through one door (`nonstop.links.connect`), and offers what the rest of the process needs of the
links: `send_ack` (on the link an envelope came by, or any other live one: Slack matches acks across an
app's connections), one `pulse` for every link's ping and watchdog, and a `view` of what it holds, which
it publishes itself for status and health to read from any thread.

Every link counts against Slack's budget of 10 connections in one place, `room()` (`nonstop.links.budget`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

from slack_sdk import WebClient

from nonstop.aio import TaskSet
from nonstop.config.settings import SupervisorSettings
from nonstop.links.budget import Budget, ConnectionShare
from nonstop.links.connect import Connector, Fatal
from nonstop.links.link import EnvelopeCallback, Link, LinkEnd
from nonstop.links.slots import Slots
from nonstop.net.retry import Backoff
from nonstop.status import Drop, Telemetry
from nonstop.status.snapshot import LinksView

__all__ = ["LinkPool"]

log = logging.getLogger("nonstop.links")


class LinkPool:
    """Args:
    settings: the supervisor's settings (links wanted, timers, retry policy).
    app_token: the app-level token for `apps.connections.open`.
    tickets: the Web API client that asks for URLs (short timeout, no hidden retries).
    share: this process's share of Slack's connections (alone, or among replicas).
    telemetry: where connections up and down, attempts and acks are counted.
    on_fatal: called once with what retrying cannot fix (a revoked token, Socket Mode off, …).
    """

    def __init__(
        self,
        settings: SupervisorSettings,
        *,
        app_token: str,
        tickets: WebClient,
        share: ConnectionShare,
        telemetry: Telemetry,
        on_fatal: Fatal,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.share = share
        self.budget = Budget(settings.connection_limit)
        self.links: set[Link] = set()  # every link held: slots', spares and suspects
        self.opening = 0  # attempts under way (they count against the budget too)
        self.unaccounted = 0  # connections Slack counted at the latest hello that this process does not hold
        self.slack_counted: int | None = None  # num_connections in the latest hello
        self.view = LinksView()
        self.stopping = False
        self._stopped = asyncio.Event()
        self._telemetry = telemetry
        self._deliver: EnvelopeCallback | None = None
        self._tasks = TaskSet()
        self.connector = Connector(
            self,
            app_token=app_token,
            tickets=tickets,
            backoff=Backoff(settings.retry_schedule, rng or random.Random()),
            telemetry=telemetry,
            on_fatal=on_fatal,
        )
        self.slots = Slots(self, self.connector)

    def deliver_to(self, callback: EnvelopeCallback) -> None:
        """Where the links hand envelopes (on the loop): the pipeline. Set before `run()`."""
        self._deliver = callback
        self.share.watch(self.slots.wake)  # other replicas owed links: spares here may have to give way

    # -- running -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Hold the links until `stop()`; then close them all."""
        tasks = [
            asyncio.create_task(self.slots.keep(i), name=f"slot-{i + 1}") for i in range(self.settings.connections)
        ]
        tasks.append(asyncio.create_task(self.slots.keep_spares(), name="spares"))
        tasks.append(asyncio.create_task(self._pulse(), name="pulse"))
        try:
            await self._stopped.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.cancel()
            await self._tasks.wait()

    def stop(self) -> None:
        """Open no more links and end `run()`; the links stay open until `close()`."""
        self.stopping = True
        self._stopped.set()
        self.slots.wake()

    async def close(self) -> int:
        """Close every link (with a close frame, never waiting long on it); return how many there were."""
        links = list(self.links)
        end = LinkEnd("shutdown", "the bot is stopping")
        await asyncio.gather(*(link.close(end) for link in links))
        for link in links:
            self.forget(link, end)
        return len(links)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the pool stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    def background(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    # -- the links ---------------------------------------------------------------------------------

    def open_link(self, name: str, url: str) -> Link:
        """A link to `url` that hands its envelopes to the pipeline (not opened yet)."""
        s = self.settings
        assert self._deliver is not None, "deliver_to() before run()"
        return Link(
            name,
            url,
            on_envelope=self._deliver,
            ping_interval_s=s.ping_interval_s,
            stale_after_s=s.stale_after_s,
            pong_timeout_s=s.pong_timeout_s,
            on_suspect=self.slots.on_suspect,
            on_inbound=self._telemetry.inbound,
            on_rtt=self._telemetry.rtt,
            max_frame_bytes=s.max_frame_bytes,
        )

    def add(self, link: Link) -> None:
        """A link just became live: hold it and count what Slack said in its hello."""
        self.links.add(link)
        self._telemetry.connection_up()
        reported = link.hello.get("num_connections")
        if isinstance(reported, int) and not isinstance(reported, bool):
            self.slack_counted = reported
            # Among replicas, the others' links are no dead ones of ours: only what nobody holds is.
            self.unaccounted = max(0, reported - len(self.links) - self.share.others_held())
            self.share.hello(reported)
        self.changed()

    def forget(self, link: Link, end: LinkEnd) -> None:
        """`link` is gone: no longer held, its part of the budget free, its end counted."""
        if link in self.links:
            self.links.discard(link)
            self.share.release()
            self._telemetry.connection_down(
                Drop(
                    at=time.time(),
                    cause=end.cause,
                    explanation=end.explanation,
                    connection_age_s=link.age_s,
                    close_code=end.code,
                )
            )
        self.changed()

    def live(self) -> list[Link]:
        return [link for link in self.links if link.is_open and not link.suspect]

    def room(self) -> int:
        """How many more connections this process may open now without Slack counting more than its
        budget: what it holds or is opening, plus what Slack counts that it does not hold."""
        held = len(self.links) + self.opening + self.share.others_held()  # replicas: theirs count too
        return self.budget.room(held, self.unaccounted)

    @property
    def target(self) -> int:
        return min(self.settings.connections, self.share.allowed)

    def changed(self) -> None:
        """Something the view shows changed: publish a new one, and let the spare links rebalance."""
        opens_in = self.connector.gate.opens_in_s
        live = len(self.live())
        target = self.target
        self.view = LinksView(
            target=target,
            live=live,
            suspect=sum(1 for link in self.links if link.is_open and link.suspect),
            spare=max(0, live - target),
            attempting=self.opening > 0,
            retry_at=time.monotonic() + opens_in if opens_in > 0 else None,
            slack_counted=self.slack_counted,
            unaccounted=self.unaccounted,
        )
        self.slots.wake()

    # -- acks --------------------------------------------------------------------------------------

    def send_ack(
        self, via: Link | None, envelope_id: str, payload: dict[str, Any] | None, kind: str, received_at: float
    ) -> None:
        """Queue the ack for `envelope_id` on `via`, the link it came by; it leaves with the turn's other acks
        (or at `flush()`). If `via` is gone, or cannot write it, another live link takes it."""
        body: dict[str, Any] = {"envelope_id": envelope_id}
        if payload is not None:
            body["payload"] = payload
        text = json.dumps(body)

        def elsewhere(counted: bool = False) -> None:
            self.background(self._ack_elsewhere(via, envelope_id, text, kind, received_at, counted=counted))

        if via is not None and via.send_soon(text, on_failure=lambda: elsewhere(counted=True)):
            self._telemetry.ack_sent(kind, time.monotonic() - received_at)
            return
        elsewhere()

    def flush(self) -> None:
        """Write every queued ack now, instead of at the end of the loop turn."""
        for link in self.links:
            link.flush()

    async def _ack_elsewhere(
        self, first: Link | None, envelope_id: str, text: str, kind: str, received_at: float, *, counted: bool
    ) -> None:
        candidates = [first] if first is not None else []
        candidates += [link for link in self.links if link is not first]
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

    # -- the pulse ---------------------------------------------------------------------------------

    async def _pulse(self) -> None:
        """One timer for the whole process: every ping interval it pings every link and proves the loop is
        alive (/healthz); in between it wakes only if some link would turn stale sooner.

        A timer callback rather than a sleep in this task: a sleep's timer only wakes the task, one more loop
        iteration per pulse, and an idle bot does little but pulse. The task fails if a pulse does."""
        loop = asyncio.get_running_loop()
        interval = self.settings.ping_interval_s
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
                for link in list(self.links):
                    stale_at = link.pulse(now)
                    if stale_at is not None:
                        due = min(due, stale_at)
                        if ping:
                            link.ping()
                timer = loop.call_at(max(due, time.monotonic() + 0.01), beat)
            except Exception as e:
                if not failed.done():
                    failed.set_exception(e)

        beat()
        try:
            await failed
        finally:
            if timer is not None:
                timer.cancel()
