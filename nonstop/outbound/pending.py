"""What a listener holds while its call waits in the governor: a `SlackResponse` that settles later.

A call that cannot go at once (its conversation owes earlier answers, Slack said 429, Slack had a bad
moment) returns a `PendingResponse` immediately, so the listener's thread is free for the next event.
Reading it (`resp["ts"]`, `resp.data`, `resp.validate()`) waits until the call is settled: the listener
waits only if it chooses to. A call that is not delivered raises when read, as a failed call does.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from slack_sdk.errors import SlackClientError
from slack_sdk.web import SlackResponse

from nonstop.net.retry import FINAL, OK, judge

__all__ = ["NotDelivered", "PendingResponse", "settled", "slack_trouble"]

_UNSET: Any = object()


class NotDelivered(SlackClientError):
    """A call the governor gave up: its deadline passed, or it may have been delivered and the bot chose not
    to post it again (`reason` is "deadline" or "unsure"). The last error, if any, is its `__cause__`."""

    def __init__(self, method: str, reason: str, detail: str) -> None:
        super().__init__(f"{method} not delivered ({reason}): {detail}")
        self.method = method
        self.reason = reason


class PendingResponse(SlackResponse):
    """A `SlackResponse` whose data arrives when the call is settled. Every read waits for it; `done()` does not.

    Args:
        client: the client that made the call (for pagination, as `SlackResponse` keeps it).
        api_url: the method's URL.
        req_args: the call's arguments, as `SlackResponse` keeps them.
        future: settles with the final `SlackResponse`, or with the exception the call ended with.
    """

    def __init__(self, *, client: Any, api_url: str, req_args: dict[str, Any], future: Future[SlackResponse]) -> None:
        # SlackResponse.__init__ would assign data/headers/status_code, which here are read from the future.
        self.http_verb = "POST"
        self.api_url = api_url
        self.req_args = req_args
        self._future = future
        self._client = client
        self._iteration = None
        self._logger = logging.getLogger("slack_sdk.web.slack_response")
        self._data_override = _UNSET
        self._headers_override = _UNSET
        self._status_override = _UNSET

    def done(self) -> bool:
        """Whether the call is settled (reading it will not wait)."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> SlackResponse:
        """The final response; raises what the call ended with. Waits at most `timeout` seconds (None: until
        settled, which the reply deadline bounds)."""
        return self._future.result(timeout)

    @property
    def data(self) -> Any:  # type: ignore[override]
        return self.result().data if self._data_override is _UNSET else self._data_override

    @data.setter
    def data(self, value: Any) -> None:  # SlackResponse's pagination assigns the next page's data
        self._data_override = value

    @property
    def _initial_data(self) -> Any:
        return self.result().data

    @property
    def headers(self) -> Any:  # type: ignore[override]
        return self.result().headers if self._headers_override is _UNSET else self._headers_override

    @headers.setter
    def headers(self, value: Any) -> None:
        self._headers_override = value

    @property
    def status_code(self) -> int:  # type: ignore[override]
        return self.result().status_code if self._status_override is _UNSET else self._status_override

    @status_code.setter
    def status_code(self, value: int) -> None:
        self._status_override = value

    def __repr__(self) -> str:
        return f"<PendingResponse {self.api_url} {'settled' if self.done() else 'waiting'}>"


def settled(client: Any, api_url: str, req_args: dict[str, Any], data: dict[str, Any]) -> SlackResponse:
    """A plain successful `SlackResponse` with `data` (for a reply found already delivered)."""
    return SlackResponse(
        client=client, http_verb="POST", api_url=api_url, req_args=req_args, data=data, headers={}, status_code=200
    )


def slack_trouble(error: BaseException) -> bool:
    """Whether `error` is Slack's trouble (busy, down, unreachable, or a call given up over it) rather than a
    listener's own failure: a listener that met it did nothing wrong, and an apology would meet it too."""
    if isinstance(error, NotDelivered):
        return True
    return judge(error).kind not in (OK, FINAL)
