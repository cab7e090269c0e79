"""`Holding`: what the link pool holds and knows — its links, what Slack counts, the share of Slack's budget
this process may use — and the bookkeeping every part of the pool does through it (`nonstop.links.pool`
composes it with the `Connector` that opens links and the `Slots` that decide which to hold).

It publishes a `view` of itself whenever it changes, for status and health to read from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nonstop.aio import TaskSet
from nonstop.config.settings import SupervisorSettings
from nonstop.links.budget import Budget, ConnectionShare, Silences
from nonstop.links.ends import LinkEnd
from nonstop.links.gate import ConnectGate
from nonstop.links.link import EnvelopeCallback, FrameCallback, Link
from nonstop.status import Drop, Telemetry
from nonstop.status.snapshot import LinksView

__all__ = ["Holding", "LinkHooks"]


@dataclass
class LinkHooks:
    """What a drop-in handler adds to the pool's links (all optional).

    Args:
        preset_url: a Socket Mode URL for the first connection, instead of asking `apps.connections.open`
            (Bolt's `client.wss_uri` set before `connect()`). The pool then holds that one link, as slack_sdk's
            clients do, until it needs a new URL anyway; from then on every link asks for a ticket of its own.
        websocket_options: the proxy and TLS keywords for `websockets.connect` to a URL (default: the
            environment's, as the Web API's, `nonstop.net.network`).
        on_frame: called on the loop's thread with every JSON frame Slack sends on any link (hello, disconnect,
            envelopes); it must be quick and must not raise.
        on_view: called on the loop's thread with every view the pool publishes.
        on_ping: called with a link's name as the pulse pings it; `on_pong` with its name and the round trip
            in ms when the pong comes back (for a trace of pings and pongs).
        on_send: called with the text of every frame the pool sends (acks, `send_text`), before it leaves.
    """

    preset_url: str | None = None
    websocket_options: Callable[[str], dict[str, Any]] | None = None
    on_frame: FrameCallback | None = None
    on_view: Callable[[LinksView], None] | None = None
    on_ping: Callable[[str], None] | None = None
    on_pong: Callable[[str, float], None] | None = None
    on_send: Callable[[str], None] | None = None

    def take_preset_url(self) -> str | None:
        url, self.preset_url = self.preset_url, None
        return url


class Holding:
    """Args:
    settings: the supervisor's settings (links wanted, timers, retry policy).
    share: this process's share of Slack's connections (alone, or among replicas).
    telemetry: where connections up and down are counted.
    """

    def __init__(
        self,
        settings: SupervisorSettings,
        *,
        share: ConnectionShare,
        telemetry: Telemetry,
        hooks: LinkHooks | None = None,
    ) -> None:
        self.settings = settings
        self.hooks = hooks or LinkHooks()
        self.share = share
        self.budget = Budget(settings.connection_limit)
        # The path's silences Slack may still count dead sockets of (links suspected within a ping round belong
        # to one): spares wait for calm after each, and the slots shrink to one while they repeat (budget.py).
        self.silences = Silences(settings.spare_calm_s, round_s=settings.ping_interval_s + settings.pong_timeout_s)
        self.gate = ConnectGate()  # the one door every connection attempt of the process goes through
        self.links: set[Link] = set()  # every link held: slots', spares and suspects
        self.opening = 0  # attempts under way (they count against the budget too)
        self.unaccounted = 0  # connections Slack counted at the latest hello that this process does not hold
        # Of those, how many are this process's own links that died silently (Slack may not have noticed yet).
        # The rest belong to another process of the app (a deploy beside this one, a forgotten laptop): they
        # take room in Slack's budget, but spare links are held only against dead ones of this process.
        self.own_dead = 0
        self.slack_counted: int | None = None  # num_connections in the latest hello
        self.refused = False  # Slack refused the latest attempt (too_many_websockets); cleared by the next hello
        self.view = LinksView()
        self._view_watchers: list[Callable[[LinksView], None]] = []
        self.preset_over = asyncio.Event()  # set once links ask for URLs of their own (see `LinkHooks.preset_url`)
        self.stopping = False
        self._stopped = asyncio.Event()
        self._telemetry = telemetry
        self._deliver: EnvelopeCallback | None = None
        self._tasks = TaskSet()
        self.on_suspect: Callable[[Link, bool], None] = lambda _link, _suspect: self.changed()
        self.on_change: Callable[[], None] = lambda: None
        self.on_crowded: Callable[[], None] = lambda: None  # Slack refused a link: no room left in its budget

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
            on_suspect=self.on_suspect,
            on_inbound=self._telemetry.inbound,
            on_rtt=self._telemetry.rtt if self.hooks.on_pong is None else lambda ms: self._pong(name, ms),
            max_frame_bytes=s.max_frame_bytes,
            websocket_options=self.hooks.websocket_options(url) if self.hooks.websocket_options else None,
            on_frame=self.hooks.on_frame,
        )

    def _pong(self, name: str, ms: float) -> None:
        self._telemetry.rtt(ms)
        if self.hooks.on_pong is not None:
            self.hooks.on_pong(name, ms)

    def add(self, link: Link) -> None:
        """A link just became live: hold it and count what Slack said in its hello."""
        self.links.add(link)
        self.refused = False
        self._telemetry.connection_up()
        reported = link.hello.get("num_connections")
        if isinstance(reported, int) and not isinstance(reported, bool):
            self.slack_counted = reported
            # Among replicas, the others' links are no dead ones of ours: only what nobody holds is.
            self.unaccounted = max(0, reported - len(self.links) - self.share.others_held())
            self.own_dead = min(self.own_dead, self.unaccounted)  # Slack forgot some, or counts none of them
            self.share.hello(reported, len(self.links))
        self.changed()

    @property
    def foreign(self) -> int:
        """Connections Slack counts that belong to another process of the app (not a replica on this Redis)."""
        return self.unaccounted - self.own_dead

    def died_silently(self) -> None:
        """A link of this process died on a dead path: Slack goes on counting it until it notices."""
        self.own_dead += 1
        self.unaccounted += 1

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

    def slots_now(self) -> int:
        """Slot links to fill now: the target, or one just after a silence and while silences repeat."""
        return self.budget.slots_wanted(self.target, self.silences, time.monotonic())

    def changed(self) -> None:
        """Something the view shows changed: publish a new one, and let the spare links rebalance."""
        opens_in = self.gate.opens_in_s
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
            own_dead=self.own_dead,
            refused=self.refused,
            limit=self.budget.limit,
        )
        if self.hooks.on_view is not None:
            self.hooks.on_view(self.view)
        for watcher in self._view_watchers:
            watcher(self.view)
        self.on_change()

    def watch_view(self, watcher: Callable[[LinksView], None]) -> None:
        """Call `watcher(view)` on the loop's thread with every view published from now on (catch-up's ear)."""
        self._view_watchers.append(watcher)
