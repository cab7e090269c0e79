"""`Connector`: how the pool gets one live link — a reservation of Slack's budget, a ticket, the handshake,
`hello` — through one door for the whole process, with the retry policy's waits in between.

Every attempt takes the connect gate (`nonstop.links.gate`) in turn, so N wanted links never multiply the
rate at which Slack is asked: during an outage the process asks `apps.connections.open` about once per
wait. What Slack answers decides what comes next (`nonstop.net.retry`): a rate limit waits exactly its
`Retry-After`; a transient failure waits by how long the trouble has lasted; what retrying cannot fix (a
revoked token, Socket Mode turned off, a certificate that does not verify) is handed to `on_fatal`, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from slack_sdk import WebClient

from nonstop.humanize import human_duration
from nonstop.links.ends import LinkEnd, LinkFailed
from nonstop.links.holding import Holding
from nonstop.links.link import Link
from nonstop.links.tickets import TicketRefused, open_ticket
from nonstop.net.retry import Backoff, is_fatal
from nonstop.status import Telemetry

__all__ = ["Connector", "Fatal"]

log = logging.getLogger("nonstop.links")

Fatal = Callable[[str, str, str], None]
"""on_fatal(error_code, which_token, detail): retrying cannot fix `error_code`; a person must act."""


class Connector:
    def __init__(
        self,
        pool: Holding,
        *,
        app_token: str,
        tickets: WebClient,
        backoff: Backoff,
        telemetry: Telemetry,
        on_fatal: Fatal,
    ) -> None:
        self._pool = pool
        self._app_token = app_token
        self._tickets = tickets
        self.backoff = backoff
        self._telemetry = telemetry
        self._on_fatal = on_fatal

    async def establish(self, name: str, first_delay: float = 0.0, *, spare: bool = False) -> Link | None:
        """Get one live link, retrying forever on transient failures. None when stopping or fatal.

        A `spare` link is tried once, and only while the budget has room: a spare is never worth a wait of
        its own (the gate still spaces attempts after a failure). Each attempt first reserves a connection of
        Slack's budget with this process's share: among replicas, atomically against what all of them hold."""
        pool = self._pool
        if first_delay > 0:
            self._pool.gate.hold_off(first_delay)
            pool.changed()
        while not pool.stopping:
            if not await pool.share.acquire():
                if spare:
                    return None
                # Held elsewhere: a link of ours being closed, or another replica's (seen through Redis).
                await pool.share.wait_for_room(pool.share.recheck_s)
                continue
            link: Link | None = None
            try:
                link = await self._attempt_in_turn(name, spare)
            finally:
                if link is None:  # the reservation goes back; the next attempt asks again
                    pool.share.release()
            if link is not None or spare:
                return link
        return None

    async def _attempt_in_turn(self, name: str, spare: bool) -> Link | None:
        """One attempt, in the gate's turn. None when it failed (the gate holds the next one off as long as
        the policy says), when stopping, or when a spare no longer has room."""
        pool = self._pool
        async with self._pool.gate.turn(pool.sleep, lambda: pool.stopping):
            if pool.stopping or (spare and pool.room() <= 0):
                return None
            pool.opening += 1
            pool.changed()
            try:
                link = await self._attempt(name)
            except (TicketRefused, LinkFailed) as e:
                delay = self._failed(name, e)
            else:
                self._telemetry.attempt("ok")
                return link
            finally:
                pool.opening -= 1
            if delay is None:
                return None
            self._pool.gate.hold_off(delay)
            pool.changed()
        return None

    def _failed(self, name: str, e: TicketRefused | LinkFailed) -> float | None:
        """Say what went wrong; return how long to wait before the next attempt (None: fatal)."""
        self._telemetry.attempt(e.cause)
        if is_fatal(e.cause):  # a dead token, link_disabled, a certificate or proxy login (nonstop.net.network)
            self._on_fatal(e.cause, "app", e.detail)
            return None
        if isinstance(e, TicketRefused) and e.retry_after_s is not None:
            delay = self.backoff.rate_limited(e.retry_after_s)
            said = f"Slack {e.detail}; retrying in exactly {delay:.1f} s as asked"
        else:
            if e.cause == "too_many_websockets":  # Slack counts more than we thought: no room left
                pool = self._pool
                room = pool.budget.limit - len(pool.links) - pool.share.others_held()
                pool.unaccounted = max(pool.unaccounted, room)
                pool.refused = True  # status says so until a link connects again
                pool.on_crowded()  # spare links give way
            delay = self.backoff.failure()
            what = f"could not get a Socket Mode URL ({e})" if isinstance(e, TicketRefused) else None
            said = f"{what or f'connection failed ({e.cause}: {e.detail})'}; retrying in {delay:.1f} s"
        log.warning("%s: %s", name, said, extra={"connection": name, "cause": e.cause, "retry_in_s": round(delay, 3)})
        return delay

    async def _attempt(self, name: str) -> Link:
        pool = self._pool
        timeout_s = pool.settings.connect_timeout_s
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        url = pool.hooks.take_preset_url()
        if url is None:
            pool.preset_over.set()
        try:
            url = url or await asyncio.wait_for(
                loop.run_in_executor(None, open_ticket, self._tickets, self._app_token), timeout_s + 1
            )
        except TimeoutError:
            raise LinkFailed("connect_timeout", "apps.connections.open did not answer in time") from None
        link = pool.open_link(name, url)
        await link.open(max(0.5, timeout_s - (time.monotonic() - started)))
        pool.add(link)
        link.ping()  # the first round trip now, not at the next pulse
        loop.call_later(pool.settings.healthy_after_s, self._healthy, link)
        log.info(
            "%s: connected in %.0f ms (Slack reports %s connection(s) for this app)",
            name,
            (time.monotonic() - started) * 1000,
            link.hello.get("num_connections", "?"),
            extra={"connection": name},
        )
        return link

    def _healthy(self, link: Link) -> None:
        if link.is_open and self.backoff.in_trouble:
            log.info("%s: healthy for %s; backoff reset", link.name, human_duration(link.age_s, tenths=True))
            self.backoff.reset()

    def after_drop(self, link: Link, end: LinkEnd) -> float:
        """Account for a link that died on its own; return how long to wait before replacing it."""
        pool = self._pool
        pool.forget(link, end)
        if end.cause == "link_disabled":
            self._on_fatal("link_disabled", "app", "")
            return 0.0
        if end.cause == "half_open":
            pool.died_silently()  # the path is dead: Slack has not noticed either, and still counts it
        if end.cause == "too_many_websockets":
            pool.refused = True
            pool.changed()
            delay = self.backoff.failure()
        else:
            delay = self.backoff.dropped(healthy=link.age_s >= pool.settings.healthy_after_s)
        others = sum(1 for other in pool.links if other.is_open)
        log.warning(
            "%s dropped after %s: %s; %s (%d other connection(s) still live)",
            link.name,
            human_duration(link.age_s, tenths=True),
            end.explanation,
            "reconnecting now" if delay == 0 else f"reconnecting in {delay:.1f} s",
            others,
            extra={"connection": link.name, "cause": end.cause, "close_code": end.code, "retry_in_s": round(delay, 3)},
        )
        return delay
