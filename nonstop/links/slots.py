"""`Slots`: which links the pool holds, and when each one is replaced.

Each of the N slots loops: get a link live, wait until it ends, Slack asks for a refresh, or it turns
*suspect* (silent for a few seconds: dead, or only slow), then replace it — at once after a healthy link
dies, with backoff after failures, make-before-break on a refresh and on a suspect link, which is kept
(as an extra) until it is known dead or heard from again.

Spare links: Slack routes envelopes and retries to every connection it believes alive, including dead
sockets it has not noticed (that can take many minutes). While Slack counts more connections than this
process holds live — suspect links, or dead ones it has let go — spare live links are held, so most of
what Slack sends lands on a live one, but never so many that one more silence would leave no room for the
replacements (`Budget.live_wanted`); once a fresh `hello` shows Slack counts nothing dead any more, the
spares are closed. Other replicas owed links come first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nonstop.humanize import human_duration
from nonstop.links.connect import Connector
from nonstop.links.ends import LinkEnd
from nonstop.links.holding import Holding
from nonstop.links.link import Link

__all__ = ["Slots"]

log = logging.getLogger("nonstop.links")


class Slots:
    def __init__(self, pool: Holding, connector: Connector) -> None:
        self._pool = pool
        self._connector = connector
        self.extras: set[Link] = set()  # links beyond the slots': spares, and suspects handed over
        self._spare_names = 0
        self._last_spare_check = 0.0
        self._rebalance = asyncio.Event()
        self._slots_changed = asyncio.Event()  # a slot past `pool.slots_now()` waits on it
        self._spare_timer: asyncio.TimerHandle | None = None  # wakes the balance when the next spare may open

    def wake(self) -> None:
        """Something changed that may call for more or fewer spare links (or slot links)."""
        self._rebalance.set()
        self._slots_changed.set()

    # -- slots -------------------------------------------------------------------------------------

    async def keep(self, index: int) -> None:
        """Keep slot `index` filled until the pool stops."""
        pool = self._pool
        name = f"connection #{index + 1}"
        while not pool.stopping:
            if index >= pool.share.allowed:  # past this replica's share of Slack's budget: wait for more
                await pool.share.changed.wait()
                continue
            if index >= pool.slots_now():  # just after a silence, or silences repeat: one slot link for now
                self._slots_changed.clear()
                await self._slots_changed.wait()
                continue
            try:
                await self._keep_one(name, index)
            except Exception:  # a bug in here must not leave the bot with one link less, forever
                delay = self._connector.backoff.failure()
                log.exception("%s: slot failed unexpectedly; restarting it in %.1f s", name, delay)
                await pool.sleep(delay)

    async def _keep_one(self, name: str, index: int) -> None:
        pool, connector = self._pool, self._connector
        link = await connector.establish(name)
        while link is not None and not pool.stopping:
            if index >= pool.share.allowed:  # the share shrank (more replicas), maybe while this one connected
                log.info(
                    "%s: closing it, this replica's share of Slack's %d connections is now %d (more replicas)",
                    name,
                    pool.budget.limit,
                    pool.share.allowed,
                )
                end = LinkEnd("trimmed", "the cluster's connection budget moved to another replica")
                await link.close(end)
                pool.forget(link, end)
                return
            await _first_of(link.ended, link.refresh_requested.wait(), link.suspected.wait(), pool.share.changed.wait())
            if pool.stopping:
                return
            if link.ended.done():
                delay = connector.after_drop(link, link.ended.result())
                if self._flapping(name, index):
                    return
                link = await connector.establish(name, first_delay=delay)
            elif link.refresh_requested.is_set():
                log.info("%s: opening its replacement before letting it go (make before break)", name)
                old = link
                await self._make_room()
                link = await connector.establish(name)
                pool.background(self._retire(old))
            elif link.suspected.is_set():
                log.warning(
                    "%s: no frame from Slack for %.1f s; opening its replacement now and keeping this one "
                    "until it is known dead (it may only be slow)",
                    name,
                    time.monotonic() - link.last_inbound,
                    extra={"connection": name, "cause": "suspect"},
                )
                self._adopt(link)  # watched from now on as an extra link: closed once dead, kept if heard from
                if self._flapping(name, index):
                    return
                await self._make_room()
                link = await connector.establish(name)

    def _flapping(self, name: str, index: int) -> bool:
        """Whether this slot stays empty for now: its link is gone and silences repeat (`Budget.slots_wanted`)."""
        pool = self._pool
        if index < pool.slots_now():
            return False
        if pool.silences.repeating:
            why = "silences repeat"
            until = "Slack counts none of the dead connections"
        else:
            why = "the network path died moments ago"
            until = f"the path has stayed up for {pool.silences.calm_s:g} s"
        log.warning(
            "%s: not replaced for now: %s; one connection until %s (a link that dies too is one more dead socket "
            "in Slack's budget of %d)",
            name,
            why,
            until,
            pool.budget.limit,
            extra={"connection": name, "cause": "flapping" if pool.silences.repeating else "calm"},
        )
        return True

    def on_suspect(self, link: Link, suspect: bool) -> None:
        """A link turned suspect, or was heard from again (`Link`'s callback)."""
        silences = self._pool.silences
        previous = silences.last
        if suspect and silences.seen(time.monotonic()):
            if silences.repeating and previous is not None:
                log.warning(
                    "the network path died again %s after the previous silence, while Slack still counts the dead "
                    "connections of an earlier one: holding one connection, and spares only once the path has "
                    "stayed up for %g s, until Slack counts none of them",
                    human_duration((silences.last or previous) - previous, tenths=True),
                    silences.calm_s,
                    extra={"cause": "flapping"},
                )
            if silences.calm_s > 0:  # spares wait until the path has stayed up a while (budget.py): look again then
                asyncio.get_running_loop().call_later(silences.calm_s + 0.05, self.wake)
        if not suspect:
            log.info(
                "%s: heard from again after %.1f s of silence; kept as a spare while it is needed",
                link.name,
                time.monotonic() - (link.suspect_since or link.last_inbound),
                extra={"connection": link.name, "cause": "suspect_cleared"},
            )
        self._pool.changed()

    async def _retire(self, link: Link) -> None:
        reason = link.refresh_reason or "disconnect"
        end = LinkEnd("refresh", f"Slack asked for a refresh ({reason}); replaced make-before-break")
        await link.close(end)
        self._pool.forget(link, end)
        log.info(
            "%s: old connection closed after %s (%s)",
            link.name,
            human_duration(link.age_s, tenths=True),
            reason,
            extra={"connection": link.name, "cause": "refresh", "reason": reason},
        )

    # -- extras: spares and suspects ---------------------------------------------------------------

    def _adopt(self, link: Link) -> None:
        """Watch `link` as an extra: a spare, or a suspect handed over by its slot."""
        self.extras.add(link)
        self._pool.background(self._watch_extra(link))
        self._pool.changed()

    async def _watch_extra(self, link: Link) -> None:
        pool = self._pool
        await _first_of(link.ended, link.refresh_requested.wait())
        if link.ended.done():
            end = link.ended.result()
            if end.cause == "half_open":
                pool.died_silently()
            pool.forget(link, end)
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
        self.extras.discard(link)
        self.wake()

    def _open_spare(self) -> Link | None:
        return next((link for link in self.extras if link.is_open and not link.suspect), None)

    async def _make_room(self) -> None:
        """Before a make-before-break: if the budget is full, let a live spare go first."""
        if self._pool.room() > 0:
            return
        spare = self._open_spare()
        if spare is not None:
            await self._release(spare, "making room within Slack's connection budget")

    async def give_way(self) -> None:
        """Slack refused a link for want of room: a spare link of ours gives its place up (to a slot of ours,
        or to another process of the app that starts beside this one)."""
        spare = self._open_spare()
        if spare is not None:
            await self._release(spare, "Slack's budget is full: a spare gives way")

    async def _release(self, link: Link, why: str) -> None:
        self.extras.discard(link)
        end = LinkEnd("spare_released", f"spare link closed: {why}")
        await link.close(end)
        self._pool.forget(link, end)
        log.info("%s: closed (%s)", link.name, why, extra={"connection": link.name, "cause": "spare_released"})

    async def keep_spares(self) -> None:
        """Hold spare live links while Slack counts more connections than this process holds live."""
        pool = self._pool
        while not pool.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rebalance.wait(), pool.settings.spare_check_s)
            self._rebalance.clear()
            if pool.stopping:
                return
            try:
                await self._balance()
            except Exception:  # a bug here must not stop the slots; try again on the next wake
                log.exception("spare links: rebalancing failed unexpectedly")
                await pool.sleep(1.0)

    async def _balance(self) -> None:
        pool = self._pool
        suspects = len(pool.links) - len(pool.live())
        doubtful = suspects + pool.own_dead  # links of ours that Slack counts and that cannot answer
        if doubtful == 0 and pool.silences.count:
            pool.silences.forget()  # Slack counts no dead socket of ours: every slot is filled again
            self._slots_changed.set()
        target = pool.slots_now()
        others = pool.share.others_held() + pool.foreign  # other processes' links count against Slack's limit too
        wanted = pool.budget.live_wanted(target, doubtful, others)  # why: nonstop/links/budget.py
        now = time.monotonic()
        calm_left = pool.silences.calm_left(now)
        if pool.share.others_short() > 0:  # other replicas are owed links: spares give way to them first
            wanted = target
        elif calm_left > 0:  # the path died moments ago: no new spare yet, none let go either
            wanted = max(target, len(pool.live()))
        for spare in [link for link in self.extras if link.is_open and not link.suspect]:
            if len(pool.live()) <= wanted:
                break
            why = (
                "Slack counts no dead connection any more"
                if doubtful == 0
                else "no more spares than the dead connections call for, with room kept for a next silence"
            )
            await self._release(spare, why)
        if doubtful == 0 or len(pool.live()) < target or calm_left > 0:
            return  # nothing dead to outnumber; the slots come first (they wake this as they connect); not calm yet
        if not suspects and pool.own_dead > 0 and now - self._last_spare_check >= pool.settings.spare_check_s:
            # Only a fresh hello says whether Slack still counts the dead: swap one spare for a new one.
            self._last_spare_check = now
            spare = self._open_spare()
            if spare is not None:
                await self._release(spare, "checking whether Slack still counts dead connections")
        opened = 0
        while not pool.stopping and pool.room() - pool.share.others_short() > 0 and len(pool.live()) < wanted:
            wait = pool.silences.spare_wait(time.monotonic())
            if wait > 0:  # one spare per ping round after a silence (budget.py): look again then
                if self._spare_timer is not None:
                    self._spare_timer.cancel()
                self._spare_timer = asyncio.get_running_loop().call_later(wait + 0.01, self.wake)
                break
            self._spare_names += 1
            link = await self._connector.establish(f"spare #{self._spare_names}", spare=True)
            if link is None:
                break
            pool.silences.spare_at = time.monotonic()
            opened += 1
            self._adopt(link)
        if opened:
            log.info(
                "holding %d spare connection(s): Slack counts %d connection(s) for this app, %d of them live here",
                max(0, len(pool.live()) - target),
                len(pool.links) + pool.unaccounted,
                len(pool.live()),
                extra={"cause": "spares"},
            )


async def _first_of(ended: asyncio.Future[LinkEnd], *waits: object) -> None:
    """Until `ended` resolves or any of the waits (coroutines) returns; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]  # type: ignore[arg-type]
    try:
        await asyncio.wait({ended, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
