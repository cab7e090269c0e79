"""HTTP/1.1 on stdlib asyncio streams, as much as the Web API and the control API need: one request per
connection, a lenient body parser, and answers that can also be cut off (no answer at all)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "RequestHandler",
    "encode_response",
    "error",
    "parse_params",
    "read_request",
    "serve_one",
]

MAX_BODY = 16 * 1024 * 1024
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


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
    cut: bool = False  # no answer at all: the connection is closed before a byte of it is written


RequestHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


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
    """Slack's way of failing a method: HTTP 200 with ok false [DOC]."""
    return HttpResponse(200, {"ok": False, "error": code})


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: RequestHandler) -> None:
    """Read one request, answer it with `handler` (or cut the connection if the answer says so), close."""
    try:
        request = await read_request(reader)
        if request is None:
            return
        response = await handler(request)
        if not response.cut:
            writer.write(encode_response(response))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
