"""Running a supervisor: in the caller's thread until it stops (`supervise`), or on a thread of its own with its
own event loop (`Background`), and stopping it on SIGTERM/SIGINT (`StopOnSignals`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from nonstop.errors import ConfigError
from nonstop.links.holding import LinkHooks
from nonstop.status.snapshot import LinksView
from nonstop.supervisor import Supervisor

__all__ = ["Background", "StopOnSignals", "supervise"]

log = logging.getLogger("nonstop")


class StopOnSignals:
    """SIGTERM and SIGINT on a loop: the first stops gracefully (`stop(name)`), a second one exits at once.

    Args:
        stop: begins a graceful stop; called with the signal's name.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, stop: Callable[[str], None]) -> None:
        self._stop = stop
        self._seen = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """On `loop`'s thread, which must be the main thread (only it receives signals)."""
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        self._loop = loop

    def uninstall(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for sig in self.SIGNALS:
                self._loop.remove_signal_handler(sig)
        self._loop = None

    def _on_signal(self, sig: signal.Signals) -> None:
        self._seen += 1
        if self._seen == 1:
            self._stop(sig.name)
            return
        log.warning("%s again: exiting now without waiting for in-flight work", sig.name)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(128 + sig.value)


async def supervise(supervisor: Supervisor, *, signals: bool) -> int:
    """Run `supervisor` on this loop until it stops; its exit code. `signals`: SIGTERM/SIGINT stop it (main thread).

    The loop thread reads and acks every envelope, and listener threads compete with it for the GIL: a shorter
    switch interval (`gil_switch_interval_s`, off unless asked for: it is process-wide) keeps a burst of
    listeners from delaying acks; it is restored when the supervisor stops."""
    switch = supervisor.settings.gil_switch_interval_s
    previous = sys.getswitchinterval()
    if switch is not None:
        sys.setswitchinterval(switch)
    stopper = StopOnSignals(supervisor.request_stop)
    if signals:
        stopper.install(asyncio.get_running_loop())
    try:
        return await supervisor.run()
    finally:
        stopper.uninstall()
        sys.setswitchinterval(previous)


class Background:
    """One run of `supervisor` on a thread of its own ("nonstop-supervisor") with its own event loop.

    Args:
        supervisor: what runs; made with `hooks`.
        hooks: the links' hooks; the run watches the pool's views through `on_view` (it wraps what was there).
    """

    def __init__(self, supervisor: Supervisor, hooks: LinkHooks) -> None:
        self.supervisor = supervisor
        self.view = LinksView()
        self.live: concurrent.futures.Future[None] = concurrent.futures.Future()
        """Resolved once a link is live; or, if the run ends first, with why it never was (`ConfigError` for
        what retrying cannot fix, `ConnectionError` for a stop)."""
        self.ended: concurrent.futures.Future[int] = concurrent.futures.Future()
        """The exit code once the run is over (0, or 78 for what retrying cannot fix)."""
        self._thread = threading.Thread(target=self._run, name="nonstop-supervisor", daemon=True)
        watched = hooks.on_view

        def on_view(view: LinksView) -> None:
            self.view = view
            if watched is not None:  # first: whoever waits on `live` may look at what it watches at once
                watched(view)
            if view.live > 0 and not self.live.done():
                self.live.set_result(None)

        hooks.on_view = on_view

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, why: str, timeout_s: float | None = None) -> int | None:
        """Stop gracefully and wait (at most `timeout_s`); the exit code, or None if still stopping."""
        self.supervisor.request_stop(why)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        return self.ended.result() if self.ended.done() else None

    def _run(self) -> None:
        code = 70  # EX_SOFTWARE, should the run itself fail: it is logged below
        try:
            code = asyncio.run(supervise(self.supervisor, signals=False))
        except BaseException:
            log.exception("the supervisor failed unexpectedly")
            raise
        finally:
            if not self.live.done():
                message = self.supervisor.fatal_message
                self.live.set_exception(
                    ConfigError(message) if message else ConnectionError("stopped before any connection was live")
                )
            if not self.ended.done():
                self.ended.set_result(code)
