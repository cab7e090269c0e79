"""`AsyncGovernedWebClient` and `AsyncAnswerThroughGovernor`: `nonstop.outbound.client` for a Bolt `AsyncApp`.

Bolt's `AsyncApp` builds a fresh `AsyncWebClient` for every request (`context.client`, and `say` on top of it,
copying the app's client's settings); `AsyncAnswerThroughGovernor` swaps it, before any listener runs, for an
`AsyncGovernedWebClient` with the same settings that knows the request's event, its place and its tracker
(`Answering`), so its calls go through the handler's `AsyncOutbound`: Slack's limits kept, `Retry-After`
waited, passing failures retried, posts marked and looked up before a second try, one conversation's answers
in the order of their events. A call that must wait is awaited by its listener (a coroutine costs no thread)
after its event gave its place in the lane to the next (`nonstop.bolt.tasks.step_aside`).

The user's own client options are kept, as Bolt copies them (token, base URL, timeout, TLS, proxy, aiohttp
session, headers, team, logger), with one exception: slack_sdk's retry handlers are dropped, since the governor
decides every retry, knowing what may already have reached Slack (a connection-error or 429 handler of the
SDK's own would repeat a post blind, or wait out a 429 with the request's place in the lane held).

Needs aiohttp (slack_sdk's async client), as any `AsyncApp` does: import it only for one.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from nonstop.bolt.tasks import current_tracker, step_aside
from nonstop.outbound.aio import AsyncOutbound
from nonstop.outbound.answering import Answering
from nonstop.status import TELEMETRY, Telemetry
from nonstop.webclient import outcome_of, settings_of

__all__ = ["AsyncAnswerThroughGovernor", "AsyncGovernedWebClient", "async_settings_of", "govern"]


def async_settings_of(client: AsyncWebClient) -> dict[str, Any]:
    """The settings Bolt copies from an `AsyncApp`'s client into each request's [SDK: slack_bolt/app/async_app.py,
    `client_per_request`], as a copy's constructor arguments, without slack_sdk's retry handlers (see above)."""
    session = {"session": client.session, "trust_env_in_session": client.trust_env_in_session}
    return settings_of(client) | session | {"retry_handlers": []}


class AsyncGovernedWebClient(AsyncWebClient):
    """An `AsyncWebClient` whose calls go through `outbound`, each try counted in `telemetry`.

    Args:
        outbound: the way out of the app's loop; None: a plain (counted) client.
        answering: what this client's calls answer (one request's); None: calls outside any request.
        telemetry: where every try is counted (`nonstop_web_api_calls_total`).
        (the rest: `AsyncWebClient`'s)
    """

    def __init__(
        self,
        *args: Any,
        outbound: AsyncOutbound | None = None,
        answering: Answering | None = None,
        telemetry: Telemetry = TELEMETRY,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.outbound = outbound
        self.answering = answering
        self.telemetry = telemetry

    @classmethod
    def for_request(
        cls, client: AsyncWebClient, *, outbound: AsyncOutbound, answering: Answering, telemetry: Telemetry = TELEMETRY
    ) -> AsyncGovernedWebClient:
        """A copy of `client` (Bolt's per-request one) bound to one request."""
        return cls(**async_settings_of(client), outbound=outbound, answering=answering, telemetry=telemetry)

    def __deepcopy__(self, memo: dict[int, Any]) -> AsyncGovernedWebClient:
        """Bolt deep-copies a request for each lazy listener: the copy answers the same request through the same
        governor (neither can be copied, nor should be), with the same settings."""
        settings = async_settings_of(self) | {"retry_handlers": self.retry_handlers}
        return type(self)(**settings, outbound=self.outbound, answering=self.answering, telemetry=self.telemetry)

    async def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.outbound is None:
            return await self.send_once(api_method, kwargs)
        return await self.outbound.call(self, api_method, kwargs, self.answering)

    async def send_once(self, api_method: str, kwargs: dict[str, Any]) -> Any:
        """One try, counted, with no governor: the driver's way to Slack."""
        error: BaseException | None = None
        try:
            return await AsyncWebClient.api_call(self, api_method, **kwargs)
        except BaseException as e:
            error = e
            raise
        finally:
            self.telemetry.web_api_call(api_method, outcome_of(error))


class AsyncAnswerThroughGovernor(AsyncMiddleware):
    """Global Bolt middleware of an `AsyncApp`: each request's client (and `say`) becomes an
    `AsyncGovernedWebClient` bound to it. A class, not a function, for the reason `AnswerThroughGovernor` is.

    Args:
        outbound: the way out of the app's loop (the handler's; `govern` points it at another).
        telemetry: where tries are counted.
    """

    def __init__(self, outbound: AsyncOutbound, telemetry: Telemetry = TELEMETRY) -> None:
        self.outbound = outbound
        self.telemetry = telemetry

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        context = req.context
        client = context.get("client")
        if isinstance(client, AsyncWebClient) and not (isinstance(client, AsyncGovernedWebClient) and client.answering):
            answering = Answering.of_request(req.body, current_tracker(), on_wait=step_aside)
            governed = AsyncGovernedWebClient.for_request(
                client, outbound=self.outbound, answering=answering, telemetry=self.telemetry
            )
            context["client"] = governed
            say = context.get("say")
            if isinstance(say, AsyncSay) and say.client is client:  # built before us: point it at the governed one
                say.client = governed
        return await next()


_INSTALLED: weakref.WeakKeyDictionary[Any, AsyncAnswerThroughGovernor] = weakref.WeakKeyDictionary()


def govern(app: Any, outbound: AsyncOutbound, telemetry: Telemetry = TELEMETRY) -> AsyncAnswerThroughGovernor:
    """Put `app`'s listeners' calls through `outbound`: the middleware added once per app (after the middleware
    the app has now, its authorization included), pointed at the latest handler's `outbound` after that."""
    middleware = _INSTALLED.get(app)
    if middleware is None:
        middleware = _INSTALLED[app] = AsyncAnswerThroughGovernor(outbound, telemetry)
        app.use(middleware)
    middleware.outbound, middleware.telemetry = outbound, telemetry
    return middleware
