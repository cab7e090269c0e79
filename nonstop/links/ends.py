"""Why a link ended (or never began): bounded causes for metrics, and WebSocket close codes in words (RFC 6455
§7.4 and the IANA registry) for people."""

from __future__ import annotations

from dataclasses import dataclass

from websockets.frames import Close, CloseCode

__all__ = ["LinkEnd", "LinkFailed", "closed_end", "describe_close"]


@dataclass(frozen=True)
class LinkEnd:
    """Why a link ended, in a bounded `cause` label and in words."""

    cause: str  # reset | half_open | server_close | refresh | too_many_websockets | link_disabled | frame_too_big
    #             | shutdown | error | trimmed | spare_released
    explanation: str
    code: int | None = None


class LinkFailed(Exception):
    """The link never became live (handshake, hello). `cause` is a bounded label."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail


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


def closed_end(sent: Close | None, received: Close | None, refresh_reason: str | None) -> LinkEnd:
    """Why a link whose connection closed ended, from the close frames each side sent (None: none) and the
    refresh Slack asked for before it (None: none)."""
    if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:  # we closed it: the frame was too big
        return LinkEnd("frame_too_big", describe_close(1009, "frame above the size cap"), 1009)
    if refresh_reason is not None:
        # Slack drops the TCP connection itself shortly after a disconnect message.
        how = describe_close(received.code, received.reason) if received else "no close frame"
        return LinkEnd("refresh", f"Slack asked for a refresh ({refresh_reason}), then closed it ({how})")
    if received is None:
        return LinkEnd("reset", describe_close(1006), 1006)
    return LinkEnd(
        "server_close", "Slack closed the connection: " + describe_close(received.code, received.reason), received.code
    )
