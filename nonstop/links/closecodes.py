"""WebSocket close codes in words (RFC 6455 §7.4 and the IANA registry)."""

from __future__ import annotations

_MEANINGS: dict[int, str] = {
    1000: "normal closure",
    1001: "going away: the server is shutting down or restarting",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status code in the close frame",
    1006: "abnormal closure: no close frame, the connection just died (reset, EOF or a dead network path)",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension missing",
    1011: "internal server error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}


def describe_close(code: int | None, reason: str = "") -> str:
    """`1006 abnormal closure: …` style text for a close code, with the peer's reason if it gave one."""
    if code is None:
        text = "no close code"
    elif code in _MEANINGS:
        text = f"{code} {_MEANINGS[code]}"
    elif 3000 <= code <= 3999:
        text = f"{code} (registered by a library or framework)"
    elif 4000 <= code <= 4999:
        text = f"{code} (application-specific)"
    else:
        text = f"{code} (unknown code)"
    return f"{text}; reason: {reason!r}" if reason else text
