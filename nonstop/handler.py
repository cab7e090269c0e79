"""`SupervisedSocketModeHandler`: Bolt's `SocketModeHandler` surface (start / connect / close), supervised.

    handler = SupervisedSocketModeHandler(app, app_token)
    sys.exit(handler.start())   # blocks; 0 after a graceful stop, 78 when retrying is futile

`start()` owns SIGTERM/SIGINT when called from the main thread: the first signal drains in-flight
handlers and exits 0, a second one exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading

from slack_bolt import App

from nonstop.bolt.runner import FailureReply
from nonstop.config.settings import SupervisorSettings
from nonstop.ledger import Ledger
from nonstop.status import TELEMETRY, Telemetry
from nonstop.supervisor import Supervisor

log = logging.getLogger("nonstop")


class SupervisedSocketModeHandler:
    def __init__(
        self,
        app: App,
        app_token: str | None = None,
        *,
        settings: SupervisorSettings | None = None,
        telemetry: Telemetry = TELEMETRY,
        failure_reply: FailureReply | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """`failure_reply(ref)`: what a user is told when Bolt itself fails on their slash command
        (listener errors go to the App's own error handler); without it the ack carries no text.
        `ledger`: where events are recorded (default: the one `settings.ledger_url` names).

        The handler installs its lanes (`nonstop.bolt.lanes`) as the App's listener executor."""
        self.app = app
        self.app_token = app_token or os.environ["SLACK_APP_TOKEN"]
        self.supervisor = Supervisor(
            app,
            self.app_token,
            settings=settings or SupervisorSettings(),
            telemetry=telemetry,
            failure_reply=failure_reply,
            ledger=ledger,
        )
        self.thread: threading.Thread | None = None
        self.exit_code: int | None = None
        self._signals = 0

    def start(self) -> int:
        """Run in this thread until stopped; return the exit code."""
        code = asyncio.run(self._main(install_signals=threading.current_thread() is threading.main_thread()))
        if not self.supervisor.drained:
            # A handler still running would keep the interpreter from exiting (executor threads are
            # joined at exit): the drain deadline has passed, so leave now.
            logging.shutdown()
            os._exit(code)
        return code

    def connect(self) -> None:
        """Run in a background thread, like Bolt's `connect()`; `close()` stops it."""

        def run() -> None:
            self.exit_code = asyncio.run(self._main(install_signals=False))

        self.thread = threading.Thread(target=run, name="nonstop-supervisor", daemon=True)
        self.thread.start()

    def close(self, timeout_s: float | None = None) -> int | None:
        """Stop gracefully and wait for it; return the exit code (None if still stopping after `timeout_s`)."""
        self.supervisor.request_stop("close() called")
        if self.thread is not None:
            self.thread.join(timeout_s)
        return self.exit_code

    async def _main(self, install_signals: bool) -> int:
        # The loop thread reads and acks every envelope; Bolt's listener threads compete with it for the
        # GIL. A shorter switch interval (Python's default is 5 ms) keeps a burst of handlers from
        # delaying acks; it is process-wide, so only when asked for, and only while running.
        switch = self.supervisor.settings.gil_switch_interval_s
        previous = sys.getswitchinterval()
        if switch is not None:
            sys.setswitchinterval(switch)
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if install_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            return await self.supervisor.run()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            sys.setswitchinterval(previous)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            self.supervisor.request_stop(sig.name)
            return
        log.warning("%s again: exiting now without waiting for in-flight work", sig.name)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(128 + sig.value)
