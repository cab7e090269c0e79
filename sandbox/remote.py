"""`RemoteSandbox`: a thin HTTP client for a sandbox started with `python -m sandbox`."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from sandbox.control import VERBS
from sandbox.records import ApiCall, Attempt, ConnectionInfo, Delivery, DeliveryRecord


def _delivery_record(d: dict[str, Any]) -> DeliveryRecord:
    return DeliveryRecord(**{**d, "attempts": [Attempt(**a) for a in d["attempts"]]})


# How to rebuild typed results; verbs not listed return plain JSON.
_RESULTS: dict[str, Callable[[Any], Any]] = {
    "mention": lambda d: Delivery(**d),
    "mentions": lambda rows: [Delivery(**d) for d in rows],
    "send_event": lambda d: Delivery(**d),
    "slash_command": lambda d: Delivery(**d),
    "interactive": lambda d: Delivery(**d),
    "open_app_home": lambda d: Delivery(**d),
    "click": lambda d: Delivery(**d),
    "bot_messages": lambda rows: [ApiCall(**r) for r in rows],
    "calls": lambda rows: [ApiCall(**r) for r in rows],
    "connections": lambda rows: [ConnectionInfo(**r) for r in rows],
    "deliveries": lambda rows: [_delivery_record(r) for r in rows],
}


class RemoteSandbox:
    """Same verb and inspection names as `Sandbox`, over the control API (no proxies, 127.0.0.1 only)."""

    def __init__(self, control_url: str, timeout: float = 30.0) -> None:
        self.control_url = control_url.rstrip("/") + "/"
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        info = self._request("GET", "info")
        self.api_url: str = info["api_url"]
        self.bot_token: str = info["bot_token"]
        self.app_token: str = info["app_token"]
        self.ws_port: int = info["ws_port"]

    def _request(self, http_method: str, name: str, body: dict[str, Any] | None = None, **query: Any) -> Any:
        url = self.control_url + name
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body or {}).encode() if http_method == "POST" else None
        req = urllib.request.Request(url, data=data, method=http_method, headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
        if not answer.get("ok"):
            raise RuntimeError(f"sandbox control {name} failed: {answer.get('error')}")
        convert = _RESULTS.get(name)
        return convert(answer["result"]) if convert else answer["result"]

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in VERBS:
            raise AttributeError(name)

        def verb(*args: Any, **kwargs: Any) -> Any:
            if args:
                raise TypeError(f"RemoteSandbox.{name}() takes keyword arguments only")
            return self._request("POST", name, kwargs)

        return verb

    def calls(self, method: str | None = None) -> list[ApiCall]:
        return self._request("GET", "calls", method=method)

    def connections(self, live_only: bool = False) -> list[ConnectionInfo]:
        return self._request("GET", "connections", live_only="1" if live_only else None)

    def deliveries(self) -> list[DeliveryRecord]:
        return self._request("GET", "deliveries")

    def bot_messages(self) -> list[ApiCall]:
        return self._request("GET", "bot_messages")

    def home_view(self, user: str | None = None) -> dict[str, Any] | None:
        return self._request("GET", "home_view", user=user)

    def handled_counts(self) -> dict[str, int]:
        return self._request("GET", "handled_counts")

    def rate_limits(self) -> dict[str, Any]:
        return self._request("GET", "rate_limits")

    def scopes(self) -> list[str]:
        return self._request("GET", "scopes")

    def history(self, channel: str | None = None) -> list[dict[str, Any]]:
        return self._request("GET", "history", channel=channel)

    def conversations(self) -> list[dict[str, Any]]:
        return self._request("GET", "conversations")

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
        """Polls (the control API has no push)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.05)
