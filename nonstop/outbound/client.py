"""`GovernedWebClient`: a `WebClient` whose every call goes through the governor, and the Bolt middleware
that gives each request one bound to what it answers.

Bolt builds a fresh plain `WebClient` for every request (`context.client`, and `say` on top of it);
`AnswerThroughGovernor` swaps it, before any listener runs, for a `GovernedWebClient` with the same
settings that knows the request's event, its place and its tracker (`Answering`). The App's own client is a
`GovernedWebClient` too, bound to no request: the bot's own calls wait at the gate and go once.

An `App` built with the middleware (`nonstop.startup.build_app`) keeps it; any other `App` gets it from the
sync drop-in handler (`govern`), once per app, as an `AsyncApp` gets its twin (`nonstop.outbound.aio_client`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltRequest, BoltResponse, Say
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from nonstop.bolt.lanes import current_tracker
from nonstop.outbound.answering import Answering
from nonstop.outbound.sync import Outbound
from nonstop.status import TELEMETRY, Telemetry
from nonstop.webclient import CallWatchers, InstrumentedWebClient, settings_of

__all__ = ["AnswerThroughGovernor", "GovernedWebClient", "govern", "governed_copy"]


class GovernedWebClient(InstrumentedWebClient):
    """An `InstrumentedWebClient` (every try counted) whose calls go through `outbound`.

    Args:
        outbound: the process's way out; None: a plain instrumented client.
        answering: what this client's calls answer (one request's); None: the bot's own calls.
        (the rest: `WebClient`'s and `InstrumentedWebClient`'s)
    """

    def __init__(
        self, *args: Any, outbound: Outbound | None = None, answering: Answering | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.outbound = outbound
        self.answering = answering

    @classmethod
    def for_request(
        cls,
        client: WebClient,
        *,
        outbound: Outbound,
        answering: Answering,
        telemetry: Telemetry = TELEMETRY,
        calls: CallWatchers | None = None,
    ) -> GovernedWebClient:
        """A copy of `client` (the settings Bolt copies into its per-request clients) bound to one request.
        No retry handlers of slack_sdk's own: the governor decides every retry, knowing what may have
        reached Slack."""
        settings = settings_of(client) | {"retry_handlers": []}
        return cls(**settings, telemetry=telemetry, calls=calls, outbound=outbound, answering=answering)

    def __deepcopy__(self, memo: dict[int, Any]) -> GovernedWebClient:
        """Bolt deep-copies a request for each lazy listener: the copy answers the same request through the same
        governor (neither can be copied, nor should be), with the same settings."""
        return type(self)(
            **settings_of(self) | {"retry_handlers": self.retry_handlers},
            telemetry=self.telemetry,
            calls=self.calls,
            outbound=self.outbound,
            answering=self.answering,
        )

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:  # type: ignore[override]
        if self.outbound is None:
            return super().api_call(api_method, **kwargs)
        return self.outbound.call(self, api_method, kwargs, self.answering)

    def send_once(self, api_method: str, kwargs: dict[str, Any]) -> SlackResponse:
        """One try, counted (`InstrumentedWebClient`), with no governor: the driver's way to Slack."""
        return InstrumentedWebClient.api_call(self, api_method, **kwargs)


class AnswerThroughGovernor(Middleware):
    """Global Bolt middleware: each request's client (and `say`) becomes a `GovernedWebClient` bound to it.

    A `Middleware` subclass, not a function: Bolt builds every injectable argument (`say` included, bound to
    the plain client) before calling a function middleware.

    Args:
        outbound: the process's way out.
        telemetry: where tries are counted.
        calls: who hears of every try's outcome (the supervisor watches for a dead token).
    """

    def __init__(self, outbound: Outbound, telemetry: Telemetry = TELEMETRY, calls: CallWatchers | None = None) -> None:
        self.outbound = outbound
        self.telemetry = telemetry
        self._calls = calls

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        context = req.context
        client = context.get("client")
        if isinstance(client, WebClient) and not (isinstance(client, GovernedWebClient) and client.answering):
            answering = Answering.of_request(req.body, current_tracker())
            governed = GovernedWebClient.for_request(
                client, outbound=self.outbound, answering=answering, telemetry=self.telemetry, calls=self._calls
            )
            context["client"] = governed
            say = context.get("say")
            if isinstance(say, Say) and say.client is client:  # built before us: point it at the governed client
                say.client = governed
        return next()


_GOVERNED: weakref.WeakKeyDictionary[Any, AnswerThroughGovernor] = weakref.WeakKeyDictionary()


def built_with(app: Any) -> AnswerThroughGovernor | None:
    """The `AnswerThroughGovernor` the app was built with (`nonstop.startup.build_app`, or its own `app.use`), not
    one `govern` added; None if it has none."""
    for middleware in getattr(app, "_middleware_list", ()):  # Bolt's list of global middleware [SDK: app.py]
        if isinstance(middleware, AnswerThroughGovernor) and _GOVERNED.get(app) is not middleware:
            return middleware
    return None


def govern(app: Any, outbound: Outbound, telemetry: Telemetry = TELEMETRY) -> AnswerThroughGovernor:
    """Put `app`'s listeners' calls through `outbound`: the middleware added once per app (after the middleware
    the app has now, its authorization included), pointed at the latest handler's `outbound` after that. An app
    built with its own (`built_with`) is not given a second: that one is returned, unchanged."""
    middleware = built_with(app) or _GOVERNED.get(app)
    if middleware is None:
        middleware = _GOVERNED[app] = AnswerThroughGovernor(outbound, telemetry)
        app.use(middleware)
    elif _GOVERNED.get(app) is middleware:
        middleware.outbound, middleware.telemetry = outbound, telemetry
    return middleware


def governed_copy(client: WebClient, outbound: Outbound, telemetry: Telemetry = TELEMETRY) -> GovernedWebClient:
    """The bot's own client for an app that was not built with a governor: `client`'s settings (those Bolt copies
    into each request's client), its calls through `outbound`, bound to no request. No retry handlers of
    slack_sdk's own: the governor decides every retry."""
    settings = {**settings_of(client), "retry_handlers": []}
    return GovernedWebClient(**settings, outbound=outbound, telemetry=telemetry)
