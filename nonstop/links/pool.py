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
import json
import logging
import random
import time
from typing import Any

from slack_sdk import WebClient

from nonstop.config.settings import SupervisorSettings
from nonstop.links.budget import ConnectionShare
from nonstop.links.connect import Connector, Fatal
from nonstop.links.ends import LinkEnd
from nonstop.links.holding import Holding, LinkHooks
from nonstop.links.link import EnvelopeCallback, Link
from nonstop.links.slots import Slots
from nonstop.net.retry import Backoff
from nonstop.status import Telemetry

__all__ = ["LinkPool"]

log = logging.getLogger("nonstop.links")


class LinkPool(Holding):
    """Args:
    settings: the supervisor's settings (links wanted, timers, retry policy).
    app_token: the app-level token for `apps.connections.open`.
    tickets: the Web API client that asks for URLs (short timeout, no hidden retries).
    share: this process's share of Slack's connections (alone, or among replicas).
    telemetry: where connections up and down, attempts and acks are counted.
    on_fatal: called once with what retrying cannot fix (a revoked token, Socket Mode off, …).
    hooks: what a drop-in handler adds to the links (a preset first URL, proxy and TLS, a tap on frames).
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
        hooks: LinkHooks | None = None,
    ) -> None:
        super().__init__(settings, share=share, telemetry=telemetry, hooks=hooks)
        self.connector = Connector(
            self,
            app_token=app_token,
            tickets=tickets,
            backoff=Backoff(settings.retry_schedule, rng or random.Random()),
            telemetry=telemetry,
            on_fatal=on_fatal,
        )
        self.slots = Slots(self, self.connector)
        self.on_suspect = self.slots.on_suspect
        self.on_change = self.slots.wake
        self.on_crowded = lambda: self.background(self.slots.give_way())

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
        if self.hooks.on_send is not None:
            self.hooks.on_send(text)

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

    async def send_text(self, text: str) -> bool:
        """Send one text frame on a live link (any will do: Slack treats an app's connections alike); False when
        no link could take it."""
        if self.hooks.on_send is not None:
            self.hooks.on_send(text)
        for link in [*self.live(), *(link for link in self.links if link.suspect)]:
            if await link.send(text):
                return True
        return False

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
                            if self.hooks.on_ping is not None:
                                self.hooks.on_ping(link.name)
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
