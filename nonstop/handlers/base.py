"""What both drop-in handlers are made of besides their own surface: the checked app and token, the setup, the
current run, and whether it is connected."""

from __future__ import annotations

import asyncio
from typing import Any

from nonstop.bolt.runner import FailureReply
from nonstop.config.settings import SupervisorSettings
from nonstop.handlers.background import Background
from nonstop.handlers.options import StockOptions
from nonstop.handlers.setup import Setup, app_token_from
from nonstop.ledger import Ledger
from nonstop.status import Telemetry
from nonstop.status.snapshot import LinksView
from nonstop.supervisor import Supervisor

__all__ = ["HandlerBase", "kind_of_app"]


def kind_of_app(app: object) -> str:
    """ "App", "AsyncApp" or "" (neither), by class name: no import, as an `AsyncApp` needs aiohttp."""
    names = {cls.__name__ for cls in type(app).__mro__ if cls.__module__.startswith("slack_bolt.")}
    return "AsyncApp" if "AsyncApp" in names else "App" if "App" in names else ""


class HandlerBase:
    """Args:
    app: the Bolt app; `wants` its kind ("App" or "AsyncApp"), `other` the handler for the other kind.
    app_token: the app-level token, or None for SLACK_APP_TOKEN.
    options: Bolt's keywords (`StockOptions.build`).
    settings, ledger, telemetry, failure_reply: Nonstop's own keywords.
    """

    def __init__(
        self,
        app: Any,
        app_token: str | None,
        options: dict[str, Any],
        *,
        wants: str,
        other: str,
        settings: SupervisorSettings | None,
        ledger: Ledger | None,
        telemetry: Telemetry,
        failure_reply: FailureReply | None,
    ) -> None:
        kind, name = kind_of_app(app), type(self).__name__
        if kind != wants:
            detail = f"for an {kind} use {other} (from nonstop import {other})" if kind else f"not {type(app).__name__}"
            raise TypeError(f"{name} runs a slack_bolt {wants}; {detail}")
        self.app = app
        self.app_token = app_token_from(app_token)
        self.options = StockOptions.build(app, **options)
        self._setup = Setup(
            self.app_token, self.options, settings=settings, ledger=ledger, telemetry=telemetry, bot_client=app.client
        )
        self._telemetry = telemetry
        self._failure_reply = failure_reply
        self.supervisor: Supervisor | None = None  # the current (or latest) run's
        self._view = LinksView()
        self._background: Background | None = None
        self._closed = False
        self.exit_code: int | None = None

    def is_connected(self) -> bool:
        """At least one link is live, and the handler is not stopping."""
        supervisor = self.supervisor
        return self._view.live > 0 and supervisor is not None and not supervisor.stopping

    def _on_view(self, view: LinksView) -> None:
        self._view = view

    def _send_text(self, text: str) -> Any:
        """A concurrent future for sending one text frame on a live link, or None when no run could take it."""
        supervisor = self.supervisor
        loop = supervisor.loop if supervisor is not None else None
        if supervisor is None or loop is None or loop.is_closed():
            return None
        try:
            return asyncio.run_coroutine_threadsafe(supervisor.send_text(text), loop)
        except RuntimeError:  # the loop closed in between
            return None
