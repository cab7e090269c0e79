"""The Web API: auth, scopes, rate limits, injected bad moments, and the methods a bot uses.

What happens to one call, in order: an outage (`Sandbox.outage`) answers first; then the token is checked
(`not_authed`, `invalid_auth`, `token_revoked`, `not_allowed_token_type`); from here on every answer
carries the token's scopes in `x-oauth-scopes` [DOC]. Then the method's scope (`missing_scope`), its rate
limit (429, sandbox/limits.py), a transient failure that does nothing (`fail_calls(mode="http_503")`), the
method itself, and last a failure that loses the answer of a call that took effect (500 or a cut
connection). Every call is recorded as an `ApiCall`, with `took_effect` and `fault` telling what Slack
really did.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from sandbox import payloads
from sandbox.config import APP_ID, SandboxConfig
from sandbox.faults import AFTER_EFFECT, Faults
from sandbox.history import History
from sandbox.httpio import HttpRequest, HttpResponse, RequestHandler, error, parse_params, serve_one
from sandbox.limits import RateLimits
from sandbox.recorder import Recorder
from sandbox.records import ApiCall
from sandbox.scopes import APP_TOKEN_SCOPES, METHOD_SCOPES, missing_scope, parse_scopes
from sandbox.socket import SocketHub

__all__ = ["WebApi"]

SCOPES_HEADER = "x-oauth-scopes"  # lowercase: Bolt reads it case-sensitively from auth.test [EXP]
ACCEPTED_HEADER = "x-accepted-oauth-scopes"  # the scope a method needs [OBS-3p: "Designing Web APIs", ch. 3]


class WebApi:
    """Slack's Web API methods the bot uses, with the limits and fault knobs applied."""

    def __init__(
        self,
        *,
        config: SandboxConfig,
        recorder: Recorder,
        faults: Faults,
        hub: SocketHub,
        tokens: dict[str, str],  # token -> "bot" | "app"
        ws_url: Callable[[], str],
        history: History,
    ) -> None:
        self.config = config
        self.recorder = recorder
        self.faults = faults
        self.hub = hub
        self.tokens = tokens
        self.ws_url = ws_url
        self.history = history
        self.clock = payloads.TsClock()
        self.control: RequestHandler | None = None
        self.limits = RateLimits(
            on=config.rate_limits,
            post_per_channel_per_s=config.post_per_channel_per_s,
            post_burst=config.post_burst,
            tier_per_minute=config.tier_per_minute,
        )
        self.bot_scopes: tuple[str, ...] = parse_scopes(config.bot_scopes)
        self._next_call = 0
        self.home_views: dict[str, dict[str, Any]] = {}  # user id -> the Home view published for them

    async def handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_one(reader, writer, self._route)

    async def _route(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/_sandbox/") and self.control is not None:
            return await self.control(request)
        return await self.handle(request)

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
        response, fault = await self._answer(method, token, params)
        took_effect = response.status == 200 and (
            response.body == "ok" or (isinstance(response.body, dict) and response.body.get("ok") is True)
        )
        if fault in AFTER_EFFECT:
            response = self._lose_answer(fault, response.headers)
        with self.recorder.lock:
            call.status = None if response.cut else response.status
            call.response = None if response.cut else response.body
            call.response_headers = None if response.cut else dict(response.headers or {})
            call.answered_at = time.monotonic()
            call.took_effect, call.fault = took_effect, fault
        self.recorder.call_answered(call)
        return response

    @staticmethod
    def _lose_answer(fault: str, headers: dict[str, str] | None) -> HttpResponse:
        if fault == "cut":
            return HttpResponse(0, None, cut=True)
        return HttpResponse(500, {"ok": False, "error": fault}, headers)

    async def _answer(self, method: str, token: str | None, params: dict[str, Any]) -> tuple[HttpResponse, str | None]:
        """The answer to one call, and the injected fault it met (if any)."""
        delay = self.faults.api_delay(method)
        if delay:
            await asyncio.sleep(delay)
        if method == "response_url":
            return HttpResponse(200, "ok"), None
        outage = self.faults.outage_for(method)
        if outage is not None:
            if outage.mode == "hang":
                await outage.ended.wait()
            elif outage.mode == "http_503":
                return HttpResponse(503, {"ok": False, "error": "service_unavailable"}), outage.mode
            elif outage.mode == "ratelimited":
                headers = {"Retry-After": str(outage.retry_after)}
                return HttpResponse(429, {"ok": False, "error": "ratelimited"}, headers), outage.mode
            elif outage.mode == "invalid_auth":
                return error("invalid_auth"), outage.mode
        if method == "apps.connections.open":
            return self._connections_open(token), None
        if token is None:
            token = params.pop("token", None)
        problem = self._check_token(token, allowed=("bot", "app") if method == "auth.test" else ("bot",))
        if problem:
            return error(problem), None
        assert token is not None
        response, fault = self._authorized(method, token, params)
        headers = {SCOPES_HEADER: ",".join(self.scopes_of(token))}
        if method in METHOD_SCOPES:
            headers[ACCEPTED_HEADER] = METHOD_SCOPES[method]
        response.headers = {**headers, **(response.headers or {})}
        return response, fault

    def _authorized(self, method: str, token: str, params: dict[str, Any]) -> tuple[HttpResponse, str | None]:
        """A call with a valid token: scope, rate limit, a transient failure, then the method."""
        needed = METHOD_SCOPES.get(method)
        if needed is not None and needed not in self.scopes_of(token):
            return HttpResponse(200, missing_scope([needed], self.scopes_of(token))), None
        retry_after = self.limits.retry_after(method, params, time.monotonic())
        if retry_after is not None:
            return HttpResponse(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}), (
                "ratelimited"
            )
        fault = self.faults.take_failure(method)
        if fault == "http_503":
            return HttpResponse(503, {"ok": False, "error": "service_unavailable"}), fault
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        return (HttpResponse(200, {"ok": True}) if handler is None else handler(token, params)), fault

    def scopes_of(self, token: str) -> tuple[str, ...]:
        return APP_TOKEN_SCOPES if self.tokens.get(token) == "app" else self.bot_scopes

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
        url = f"{self.ws_url()}/link/?ticket={ticket}&app_id={APP_ID}"
        return HttpResponse(200, {"ok": True, "url": url}, {SCOPES_HEADER: ",".join(APP_TOKEN_SCOPES)})

    # --- methods (m_<method with dots as underscores>) -----------------------------------------
    def m_auth_test(self, token: str, params: dict[str, Any]) -> HttpResponse:
        return HttpResponse(200, payloads.auth_test(self.tokens[token] == "app"))

    def m_chat_postMessage(self, token: str, params: dict[str, Any]) -> HttpResponse:
        if not params.get("channel"):
            return error("channel_not_found")
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return error("no_text")
        metadata, problem = payloads.message_metadata(params.get("metadata"))
        if problem:
            return error(problem)
        conv = self.history.resolve(str(params["channel"]))
        if not conv.member:
            return error("not_in_channel")
        message = payloads.posted_message(params, self.clock.next(), metadata)
        self.history.record(conv, message)
        return HttpResponse(200, {"ok": True, "channel": conv.id, "ts": message["ts"], "message": message})

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
        message = payloads.posted_message(params, ts, None)
        conv = self.history.conversations.get(str(params["channel"]))
        if conv is not None:  # an edit of a message Slack holds [INF: one it does not hold is answered ok too]
            self.history.update(conv, ts, {k: message[k] for k in ("text", "blocks", "attachments") if k in message})
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

    def m_users_conversations(self, token: str, params: dict[str, Any]) -> HttpResponse:
        return HttpResponse(200, self.history.users_conversations(params, self.scopes_of(token)))

    def m_conversations_history(self, token: str, params: dict[str, Any]) -> HttpResponse:
        return HttpResponse(200, self.history.conversations_history(params, self.scopes_of(token)))

    def m_conversations_replies(self, token: str, params: dict[str, Any]) -> HttpResponse:
        readable = self.config.bot_reads_channel_threads
        return HttpResponse(
            200, self.history.conversations_replies(params, self.scopes_of(token), bot_reads_channel_threads=readable)
        )
