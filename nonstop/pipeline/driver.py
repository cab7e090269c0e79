"""`PipelineDriver`: the asyncio layer under the pipeline's pure core (`nonstop.pipeline.core`).

The path of an event, one way: a link hands the envelope to `receive`; at the end of the loop turn the
turn's events go to the ledger in one write; the core answers with acks, which go out through the link
pool in one write per link, and starts, which go to the Bolt runner once the burst is acked; the runner
says when an event's work is done (from its thread, hopped onto the loop here); the turn's finished events
are marked done in the ledger in one write. Interactions go from `receive` to the runner and their ack
back out through the pool.

Only this layer knows about the loop, the ledger's I/O, the runner and the pool; the decisions are the
core's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from slack_sdk.socket_mode.request import SocketModeRequest

from nonstop.aio import TaskSet
from nonstop.ledger.base import Ledger, LedgerError, Recovered
from nonstop.pipeline.core import Ack, Action, Arrival, EventPipeline, Run, Start
from nonstop.pipeline.envelopes import key_label, parse_request

__all__ = ["AckSender", "PipelineDriver", "Runner"]

log = logging.getLogger("nonstop.pipeline")


class AckSender(Protocol):
    """Where acks go (`nonstop.links.pool.LinkPool` is one)."""

    def send_ack(
        self, via: Any, envelope_id: str, payload: dict[str, Any] | None, kind: str, received_at: float
    ) -> None:
        """Queue an ack on link `via` (or on another live link, if that one is gone); it leaves at the end of
        the loop turn, or at `flush()`."""

    def flush(self) -> None:
        """Write the acks queued so far now."""


class Runner(Protocol):
    """What runs the listeners (`nonstop.bolt.runner.BoltRunner` for an `App` on threads,
    `nonstop.bolt.aio_runner.AsyncBoltRunner` for an `AsyncApp` on its own loop). Its callbacks may come from
    any thread; the driver hops back onto its loop."""

    def run_event(
        self, request: SocketModeRequest, done: Callable[[], None], runs: int = 1, *, recovered: bool = False
    ) -> bool:
        """Dispatch an event; `done()` once it and every listener it started have returned (`runs`: the ledger's
        count of its starts; `recovered`: it came by no link, catch-up found it). False, and `done` never
        called, when the runner no longer takes events (stopping)."""

    def run_interaction(self, request: SocketModeRequest, acked: Callable[[dict[str, Any] | None], None]) -> bool:
        """Dispatch an interaction; `acked(payload)` with what to ack it with. Taken until `close()`."""

    def stop_events(self, timeout_s: float, *, leave_queued: bool) -> bool:
        """Take no new events and wait, from a thread other than the driver's loop, for the work under way, the
        answers its listeners still owe included (`leave_queued`: events handed over but not started are dropped).
        True if it all finished in time."""

    def close(self) -> None:
        """Take nothing more."""


class PipelineDriver:
    """Args:
    core: the pipeline's decisions.
    ledger: where events are admitted and marked done (opened by the caller).
    runner: runs the Bolt app.
    acks: where acks go.
    """

    def __init__(self, core: EventPipeline, *, ledger: Ledger, runner: Runner, acks: AckSender) -> None:
        self._core = core
        self._ledger = ledger
        self._runner = runner
        self._acks = acks
        self._loop = asyncio.get_running_loop()
        self._tasks = TaskSet()
        self._admission_due = False
        self._record_due = False
        self._wake: asyncio.TimerHandle | None = None

    # -- in ----------------------------------------------------------------------------------------

    def receive(self, via: Any, message: dict[str, Any], text: str | None = None) -> None:
        """An envelope from link `via`, on the loop's thread. `text`: as it came off the wire."""
        self._carry_out(self._core.receive(via, message, text, time.monotonic()))
        if self._core.has_arrivals and not self._admission_due:
            self._admission_due = True
            self._loop.call_soon(self._admit_turn)

    async def inject(self, envelopes: list[dict[str, Any]]) -> list[str]:
        """Envelopes that came by no link: catch-up made them from messages it found in history, each shaped as
        a Socket Mode `events_api` envelope (with `"nonstop": {"recovered": true}` beside its payload). They go
        through the same ledger admission, dedupe, backlog, lanes and listeners as delivered ones, in one
        ledger write; nothing is acked. One outcome each: "new" (admitted: it will run), "duplicate" (known
        already: pending, done, or running here) or "refused" (backlog full, stopping, or the ledger could not
        be written: catch-up must try it again and keep its mark before it). On the driver's loop. Raises
        `ValueError`, before anything is admitted, when one is not an Events API envelope."""
        now = time.monotonic()
        for message in envelopes:  # all checked first: a bad one admits nothing
            if not isinstance(message, dict) or message.get("type") != "events_api" or parse_request(message) is None:
                raise ValueError("inject() takes Socket Mode events_api envelopes with a payload object")
        taken = [self._core.recover(message, now) for message in envelopes]
        batch = [arrival for arrival in taken if isinstance(arrival, Arrival)]
        fresh: list[bool] = []
        if batch:
            entries = [arrival.entry() for arrival in batch]
            try:
                answer = self._ledger.admit_now(entries)
                fresh = answer if answer is not None else await self._ledger.admit(entries)
            except BaseException as e:  # cancelled included: not on record, counted out of the backlog
                self._core.not_admitted(batch)
                if not isinstance(e, Exception):
                    raise
                log.error("could not record %d recovered event(s); catch-up tries them again: %s", len(batch), e)
                return ["refused" if isinstance(arrival, Arrival) else arrival for arrival in taken]
            self._admitted(batch, fresh)
        answers = iter(fresh)
        return [("new" if next(answers) else "duplicate") if isinstance(x, Arrival) else x for x in taken]

    def replay(self, recovered: Recovered, source: str) -> None:
        """Run again what an earlier run (`source` says which) acked and never finished."""
        for entry in recovered.given_up:
            event_id = key_label(entry.key)
            log.error(
                "gave up on event %s: it was started %d times and never finished (each time the process died or "
                "stopped first); it will not run again",
                event_id,
                entry.runs,
                extra={"event_id": event_id},
            )
        if recovered.unfinished:
            ids = ", ".join(key_label(entry.key) for entry in recovered.unfinished[:20])
            more = len(recovered.unfinished) - 20
            log.warning(
                "running %d event(s) again that %s: %s%s",
                len(recovered.unfinished),
                source,
                ids,
                f" and {more} more" if more > 0 else "",
            )
        self._carry_out(self._core.replay(recovered.unfinished))
        self._record_soon()

    # -- the ledger --------------------------------------------------------------------------------

    def _admit_turn(self) -> None:
        self._admission_due = False
        batch = self._core.take_admissions()
        if not batch:
            return
        entries = [arrival.entry() for arrival in batch]
        try:
            fresh = self._ledger.admit_now(entries)
        except BaseException as e:
            self._not_admitted(batch, e)
            if not isinstance(e, Exception):
                raise
            return
        if fresh is None:  # a ledger that must be awaited (Redis)
            self._tasks.spawn(self._admit(batch, entries))
            return
        self._admitted(batch, fresh)

    async def _admit(self, batch: list[Arrival], entries: list[Any]) -> None:
        try:
            fresh = await self._ledger.admit(entries)
        except BaseException as e:  # cancelled at shutdown included: not on record, so not acked
            self._not_admitted(batch, e)
            if not isinstance(e, Exception):
                raise
            return
        self._admitted(batch, fresh)

    def _admitted(self, batch: list[Arrival], fresh: list[bool]) -> None:
        self._carry_out(self._core.admitted(batch, fresh, self._loop.time()))
        self._acks.flush()  # this turn's acks now: one more loop iteration is one more wait for the GIL
        self._core.acks_written(self._loop.time())
        self._arm()

    def _not_admitted(self, batch: list[Arrival], error: BaseException) -> None:
        self._core.not_admitted(batch)
        if isinstance(error, LedgerError):
            log.error("could not record %d event(s), left unacked for Slack to retry: %s", len(batch), error)
        elif isinstance(error, Exception):
            log.exception("recording %d event(s) failed unexpectedly; left unacked for Slack to retry", len(batch))

    def _record_soon(self) -> None:
        if not self._record_due:
            self._record_due = True
            self._loop.call_soon(self._record_turn)

    def _record_turn(self) -> None:
        self._record_due = False
        keys = self._core.take_finished()
        if keys:
            self._tasks.spawn(self._record(keys))

    async def _record(self, keys: list[str]) -> None:
        try:
            await self._ledger.finish(keys)
        except LedgerError as e:
            log.error("could not mark %d event(s) done; they will run again at the next start: %s", len(keys), e)

    # -- out ---------------------------------------------------------------------------------------

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Ack):
                self._acks.send_ack(action.via, action.envelope_id, action.payload, action.kind, action.received_at)
            elif isinstance(action, Start):
                self._start(action)
            else:
                self._run(action)

    def _start(self, start: Start) -> None:
        done = self._from_thread(lambda: self._finished(start.key))
        if not self._runner.run_event(start.request, done, runs=start.runs, recovered=start.recovered):
            log.info("stopping: event %s not started; it stays on record", key_label(start.key))

    def _finished(self, key: str) -> None:
        self._carry_out(self._core.finished(key))
        self._record_soon()

    def _run(self, run: Run) -> None:
        def acked(payload: dict[str, Any] | None) -> None:
            self._carry_out(self._core.interaction_done(run, payload))

        if not self._runner.run_interaction(run.request, lambda payload: self._from_thread(lambda: acked(payload))()):
            log.warning("could not run envelope %s (%s): the bot is stopping", run.request.envelope_id, run.kind)

    def _arm(self) -> None:
        wake = self._core.wake_at
        if self._wake is not None and (wake is None or self._wake.when() != wake):
            self._wake.cancel()
            self._wake = None
        if wake is not None and self._wake is None:
            self._wake = self._loop.call_at(wake, self._on_wake)

    def _on_wake(self) -> None:
        self._wake = None
        self._carry_out(self._core.due(self._loop.time()))
        self._arm()  # still held (the timer ran a hair early): wake again

    def _from_thread(self, callback: Callable[[], None]) -> Callable[[], None]:
        def hop() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process is stopping anyway
                self._loop.call_soon_threadsafe(callback)

        return hop

    # -- stopping ----------------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Take no new events; this turn's are still recorded and acked (see `EventPipeline.stop_accepting`)."""
        self._admit_turn()
        self._carry_out(self._core.stop_accepting())
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None

    async def settle(self) -> list[str]:
        """After the runner stopped: record what finished; return the keys of events still unfinished."""
        await asyncio.sleep(0)  # let the last listeners' "finished" hops run
        self._record_turn()
        await self._tasks.wait()
        return self._core.unfinished()

    @property
    def backlog(self) -> int:
        return self._core.backlog
