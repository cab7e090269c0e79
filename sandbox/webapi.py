"""The Web API over HTTP/1.1 (stdlib asyncio streams): parsing, auth, methods, response_url."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox import payloads
from sandbox.config import APP_ID, BOT_SCOPES, SandboxConfig
from sandbox.faults import Faults
from sandbox.recorder import Recorder
from sandbox.records import ApiCall
from sandbox.socket import SocketHub

MAX_BODY = 16 * 1024 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 503: "Service Unavailable"}


@dataclass
class HttpRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lowercase names
    body: bytes


@dataclass
class HttpResponse:
    status: int
    body: Any  # dict -> JSON, str -> text
    headers: dict[str, str] | None = None


ControlHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def parse_params(body: bytes, query: dict[str, str]) -> dict[str, Any]:
    """Lenient: empty body, JSON or form, whatever the Content-Type says."""
    params: dict[str, Any] = dict(query)
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            params.update(parsed)
            return params
    if text:
        params.update(dict(parse_qsl(text, keep_blank_values=True)))
    return params


async def read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(min(length, MAX_BODY)) if length else b""
    url = urlsplit(parts[1])
    return HttpRequest(parts[0].upper(), url.path, dict(parse_qsl(url.query)), headers, body)


def encode_response(response: HttpResponse) -> bytes:
    if isinstance(response.body, str):
        body, ctype = response.body.encode(), "text/plain; charset=utf-8"
    else:
        body, ctype = json.dumps(response.body).encode(), "application/json; charset=utf-8"
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}", f"Content-Type: {ctype}"]
    lines += [f"{k}: {v}" for k, v in (response.headers or {}).items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + body


def error(code: str) -> HttpResponse:
    return HttpResponse(200, {"ok": False, "error": code})


class WebApi:
    """Slack's Web API methods the bot uses, with the fault knobs applied."""

    def __init__(
        self,
        *,
        config: SandboxConfig,
        recorder: Recorder,
        faults: Faults,
        hub: SocketHub,
        tokens: dict[str, str],  # token -> "bot" | "app"
        ws_url: Callable[[], str],
    ) -> None:
        self.config = config
        self.recorder = recorder
        self.faults = faults
        self.hub = hub
        self.tokens = tokens
        self.ws_url = ws_url
        self.clock = payloads.TsClock()
        self.control: ControlHandler | None = None
        self._next_call = 0
        self.home_views: dict[str, dict[str, Any]] = {}  # user id -> the Home view published for them

    async def handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_request(reader)
            if request is None:
                return
            if request.path.startswith("/_sandbox/") and self.control is not None:
                response = await self.control(request)
            else:
                response = await self.handle(request)
            writer.write(encode_response(response))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def handle(self, request: HttpRequest) -> HttpResponse:
        params = parse_params(request.body, request.query)
        path = request.path
        if path.startswith("/api/"):
            method = path[len("/api/") :].strip("/")
        elif path.startswith(("/commands/", "/actions/")):
            method = "response_url"
        else:
            return HttpResponse(404, {"ok": False, "error": "not_found"})
        auth = request.headers.get("authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
        self._next_call += 1
        call = ApiCall(self._next_call, method, path, token, params, dict(request.headers), time.monotonic())
        with self.recorder.lock:
            self.recorder.calls.append(call)
        self.recorder.changed()
        response = await self._answer(method, token, params)
        with self.recorder.lock:
            call.status, call.response, call.answered_at = response.status, response.body, time.monotonic()
        self.recorder.call_answered(call)
        return response

    async def _answer(self, method: str, token: str | None, params: dict[str, Any]) -> HttpResponse:
        delay = self.faults.api_delay(method)
        if delay:
            await asyncio.sleep(delay)
        if method == "response_url":
            return HttpResponse(200, "ok")
        outage = self.faults.outage_for(method)
        if outage is not None:
            if outage.mode == "hang":
                await outage.ended.wait()
            elif outage.mode == "http_503":
                return HttpResponse(503, {"ok": False, "error": "service_unavailable"})
            elif outage.mode == "ratelimited":
                return HttpResponse(
                    429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(outage.retry_after)}
                )
            elif outage.mode == "invalid_auth":
                return error("invalid_auth")
        if method == "apps.connections.open":
            return self._connections_open(token)
        if token is None and method != "apps.connections.open":
            token = params.pop("token", None)
        problem = self._check_token(token, allowed=("bot", "app") if method == "auth.test" else ("bot",))
        if problem:
            return error(problem)
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return HttpResponse(200, {"ok": True})
        return handler(token, params)

    def _check_token(self, token: str | None, allowed: tuple[str, ...]) -> str:
        if not token:
            return "not_authed"
        kind = self.tokens.get(token)
        if kind is None:
            return "invalid_auth"
        if token in self.faults.revoked:
            return "token_revoked"
        if kind not in allowed:
            return "not_allowed_token_type"
        return ""

    def _connections_open(self, token: str | None) -> HttpResponse:
        if not token:
            return error("not_authed")
        if not token.startswith("xapp-"):
            return error("not_allowed_token_type")
        problem = self._check_token(token, allowed=("app",))
        if problem:
            return error(problem)
        ticket = self.hub.issue_ticket()
        return HttpResponse(200, {"ok": True, "url": f"{self.ws_url()}/link/?ticket={ticket}&app_id={APP_ID}"})

    # --- methods (m_<method with dots as underscores>) -----------------------------------------
    def m_auth_test(self, token: str, params: dict[str, Any]) -> HttpResponse:
        return HttpResponse(200, payloads.auth_test(self.tokens[token] == "app"), {"x-oauth-scopes": BOT_SCOPES})

    def m_chat_postMessage(self, token: str, params: dict[str, Any]) -> HttpResponse:
        if not params.get("channel"):
            return error("channel_not_found")
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return error("no_text")
        ts = self.clock.next()
        return HttpResponse(
            200, {"ok": True, "channel": params["channel"], "ts": ts, "message": payloads.posted_message(params, ts)}
        )

    def m_chat_postEphemeral(self, token: str, params: dict[str, Any]) -> HttpResponse:
        if not params.get("channel"):
            return error("channel_not_found")
        if not params.get("user"):
            return error("user_not_in_channel")
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return error("no_text")
        return HttpResponse(200, {"ok": True, "message_ts": self.clock.next()})

    def m_chat_update(self, token: str, params: dict[str, Any]) -> HttpResponse:
        if not params.get("channel"):
            return error("channel_not_found")
        if not params.get("ts"):
            return error("message_not_found")
        ts = str(params["ts"])
        message = payloads.posted_message(params, ts)
        return HttpResponse(
            200,
            {"ok": True, "channel": params["channel"], "ts": ts, "text": params.get("text", ""), "message": message},
        )

    def m_reactions_add(self, token: str, params: dict[str, Any]) -> HttpResponse:
        if not params.get("name"):
            return error("invalid_name")
        return HttpResponse(200, {"ok": True})

    def m_views_publish(self, token: str, params: dict[str, Any]) -> HttpResponse:
        """Modelled on Slack's views.publish reference: JSON-encoded (or inline) view, optional hash
        checked against the stored one (hash_conflict), a new hash on every publish."""
        view = params.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                return error("invalid_arguments")
        user = params.get("user_id")
        if not user or not isinstance(view, dict) or view.get("type") != "home":
            return error("invalid_arguments")
        current = self.home_views.get(str(user))
        if params.get("hash") and (current is None or params["hash"] != current["hash"]):
            return error("hash_conflict")
        view_id = current["id"] if current is not None else f"V0EMUL{len(self.home_views) + 1:04d}"
        stored = payloads.published_view(view, view_id=view_id, view_hash=self.clock.next())
        self.home_views[str(user)] = stored
        return HttpResponse(200, {"ok": True, "view": stored})
