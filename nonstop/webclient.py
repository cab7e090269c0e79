"""A `WebClient` that counts every Web API call by method and outcome, and tells who wants to know.

Every try the bot makes is counted here: the governor's client (`nonstop.outbound.GovernedWebClient`)
is one, and each request's copy of it too, so listeners' replies are counted as well as the bot's own
calls (auth.test, …).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from nonstop.status import TELEMETRY, Telemetry


def outcome_of(error: BaseException | None) -> str:
    """A bounded outcome label: ok, a Slack error code, ratelimited, http_<status>, timeout, network, error."""
    if error is None:
        return "ok"
    if isinstance(error, SlackApiError):
        status = error.response.status_code
        data = error.response.data if isinstance(error.response.data, dict) else {}
        if status == 429:
            return "ratelimited"
        code = data.get("error")
        if status == 200 and isinstance(code, str) and code:
            return code  # Slack's own error vocabulary (metrics squeeze anything odd into "other")
        return f"http_{status}"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, OSError):  # URLError, refused, reset, DNS, TLS
        reason = getattr(error, "reason", None)
        return "timeout" if isinstance(reason, TimeoutError) else "network"
    return "error"


CallWatcher = Callable[[str, str], None]
"""watcher(method, outcome), on the thread that made the call; it must be quick and must not raise."""


class CallWatchers:
    """Who wants to hear of every Web API call's outcome (telemetry counts; the supervisor decides)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: tuple[CallWatcher, ...] = ()

    def watch(self, watcher: CallWatcher) -> Callable[[], None]:
        """Add `watcher`; return the function that removes it again."""
        with self._lock:
            self._watchers = (*self._watchers, watcher)

        def unwatch() -> None:
            with self._lock:
                self._watchers = tuple(w for w in self._watchers if w is not watcher)

        return unwatch

    def __call__(self, method: str, outcome: str) -> None:
        for watcher in self._watchers:
            watcher(method, outcome)


def settings_of(client: WebClient | Any) -> dict[str, Any]:
    """The settings Bolt copies from the App's client into each request's: a copy's constructor arguments (the
    ones a `WebClient` and an `AsyncWebClient` share)."""
    return {
        "token": client.token,
        "base_url": client.base_url,
        "timeout": client.timeout,
        "ssl": client.ssl,
        "proxy": client.proxy,
        "headers": dict(client.headers),
        "team_id": client.default_params.get("team_id"),
        "logger": client.logger,
        "retry_handlers": client.retry_handlers.copy() if client.retry_handlers is not None else None,
    }


class InstrumentedWebClient(WebClient):
    """`WebClient` whose every `api_call` (and so every `chat_postMessage`, `auth_test`, …) is counted
    in `telemetry` and reported to `calls` (shared with the copies that `like()` makes)."""

    def __init__(
        self, *args: Any, telemetry: Telemetry = TELEMETRY, calls: CallWatchers | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.telemetry = telemetry
        self.calls = calls or CallWatchers()

    @classmethod
    def like(cls, client: WebClient, telemetry: Telemetry, calls: CallWatchers | None = None) -> InstrumentedWebClient:
        """An instrumented copy of `client` (the same settings Bolt copies into its per-request clients)."""
        return cls(**settings_of(client), telemetry=telemetry, calls=calls)

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:  # type: ignore[override]
        error: BaseException | None = None
        try:
            return super().api_call(api_method, **kwargs)
        except BaseException as e:
            error = e
            raise
        finally:
            outcome = outcome_of(error)
            self.telemetry.web_api_call(api_method, outcome)
            self.calls(api_method, outcome)
