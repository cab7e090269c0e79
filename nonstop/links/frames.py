"""Frames as they cross the wire. Out: client text frames (RFC 6455 §5.2) for a loop turn's acks, masked
with keys from a pool of entropy. In: a frame from Slack read as the JSON object it must be.

Why not the library's framing (`protocol.send_text`): websockets draws every frame's masking key with
`secrets.token_bytes(4)`, one `getrandom` system call per frame, and CPython lets go of the GIL around
it. On the loop thread under a burst, getting the GIL back means queueing behind every runnable
listener thread, once per ack. Here one `os.urandom` read yields the keys of 1,024 frames: as
unpredictable as RFC 6455 §5.3 asks ("derived from a strong source of entropy"), one system call
instead of 1,024. The link sends no fragmented or compressed messages (it connects with
compression=None), so a frame is the whole message.

Its pings are framed here too, for the same reason and because an idle bot does little else: see
`Link.ping`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from typing import Any

try:
    from websockets.speedups import apply_mask  # the library's C helper, when built for this platform
except ImportError:  # pragma: no cover - pure-Python wheels
    from websockets.utils import apply_mask

_log = logging.getLogger("nonstop.links.link")

_OP_TEXT_FIN = 0x81
_OP_PING_FIN = 0x89
_OP_PONG_FIN = 0x8A
_MASKED = 0x80
_KEYS_PER_READ = 1024

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Far above any envelope Slack sends (a message's text is capped at 40,000 characters, a view at 250
KB of JSON); a frame this large is a broken peer, and memory must stay bounded."""


class MaskKeys:
    """4-byte masking keys, drawn from the operating system's CSPRNG `_KEYS_PER_READ` at a time. One per link:
    not thread-safe (the event loop's thread is the only writer)."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def next(self) -> bytes:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(4 * _KEYS_PER_READ), 0
        key = self._pool[self._at : self._at + 4]
        self._at += 4
        return key


def text_frame(text: str, key: bytes) -> bytes:
    """One final, masked text frame carrying `text` (as a client must send it)."""
    data = text.encode()
    length = len(data)
    if length < 126:
        head = struct.pack("!BB", _OP_TEXT_FIN, _MASKED | length)
    elif length < 65536:
        head = struct.pack("!BBH", _OP_TEXT_FIN, _MASKED | 126, length)
    else:
        head = struct.pack("!BBQ", _OP_TEXT_FIN, _MASKED | 127, length)
    return head + key + apply_mask(data, key)


def ping_frame(payload: bytes, key: bytes) -> bytes:
    """One masked ping carrying `payload` (at most 125 bytes, as for any control frame)."""
    assert len(payload) < 126, "a control frame's payload is at most 125 bytes"
    return struct.pack("!BB", _OP_PING_FIN, _MASKED | len(payload)) + key + apply_mask(payload, key)


def pong_frame(payload: bytes) -> bytes:
    """The pong a server sends back for a ping carrying `payload`, as it appears on the wire (unmasked)."""
    return struct.pack("!BB", _OP_PONG_FIN, len(payload)) + payload


def parse_frame(raw: str | bytes, link: str) -> dict[str, Any] | None:
    """In: a frame from Slack as the JSON object it must be, or None (said in the log of `link`). A bad frame is
    described by its size and type, never by its content: it may carry user text."""
    if isinstance(raw, bytes):
        _log.warning("%s: ignored a binary frame of %d bytes", link, len(raw))
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        _log.warning("%s: ignored a text frame of %d characters that is not JSON", link, len(raw))
        return None
    if not isinstance(message, dict):
        _log.warning(
            "%s: ignored a JSON frame of %d characters that is a %s, not an object",
            link,
            len(raw),
            type(message).__name__,
        )
        return None
    return message
