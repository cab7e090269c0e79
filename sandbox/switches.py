"""The switches that break things or change the rules: connection faults, Web API outages, revoked
tokens, lost acks, slow answers, rate limits, failing calls, scopes and a Slack-side incident."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.core import SandboxBase
from sandbox.faults import DISCONNECT_REASONS, FAILURE_MODES, OUTAGE_MODES, Failure, Outage
from sandbox.scopes import parse_scopes
from sandbox.socket import WsConnection

__all__ = ["Switches"]


class Switches(SandboxBase):
    """Faults and rules, switched at run time from any thread (each also over the control API)."""

    # --- connections ------------------------------------------------------------------------------
    def reset(self, conn: str | list[str] | None = None) -> list[str]:
        """Abrupt TCP reset (SO_LINGER 0), no close frame. Returns the ids affected."""
        return self._call(lambda: [self._each(c, c.reset) for c in self._targets(conn)])

    def eof(self, conn: str | list[str] | None = None) -> list[str]:
        """The connection just ends: FIN, no close frame (a proxy or NAT closing quietly). "Slack" stops
        routing there at once; the sandbox closes its socket only when the client does."""
        return self._call(lambda: [self._each(c, c.end) for c in self._targets(conn)])

    def close(self, code: int = 1001, reason: str = "", conn: str | list[str] | None = None) -> list[str]:
        """A clean close frame with `code`; TCP is dropped if the client has not within a grace period."""
        timeout = self.config.close_handshake_timeout_s
        return self._call(lambda: [self._each(c, lambda c=c: c.close_frame(code, reason, timeout))
                                   for c in self._targets(conn)])  # fmt: skip

    def silence(self, conn: str | list[str] | None = None) -> list[str]:
        """Half-open link: nothing crosses either way, TCP stays open, and "Slack" goes on counting the
        connection and routing envelopes and retries to it for `silent_link_alive_s`."""
        return self._call(lambda: [self._each(c, lambda c=c: self._hub.silence(c)) for c in self._targets(conn)])

    def send_raw(self, data: str | bytes, conn: str | list[str] | None = None) -> list[str]:
        """Send one frame as-is (text for str, binary for bytes): garbage, half-formed envelopes, …"""
        return self._call(lambda: [self._each(c, lambda c=c: c.send_raw(data)) for c in self._targets(conn)])

    def disconnect(self, reason: str = "refresh_requested", conn: str | list[str] | None = None) -> list[str]:
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"reason must be one of {DISCONNECT_REASONS}")
        return self._call(lambda: [self._each(c, lambda c=c: self._hub.disconnect(c, reason))
                                   for c in self._targets(conn)])  # fmt: skip

    @staticmethod
    def _each(conn: WsConnection, action: Callable[[], object]) -> str:
        action()
        return conn.info.id if conn.info is not None else "?"

    def outage(
        self,
        seconds: float,
        mode: str = "refused",
        retry_after: int = 1,
        drop_connections: bool = True,
        methods: Iterable[str] | None = ("apps.connections.open",),
    ) -> None:
        """Web API outage. `refused` closes the whole API port (same port comes back); other modes hit
        `methods` (None: every method). drop_connections resets live sockets first."""
        if mode not in OUTAGE_MODES:
            raise ValueError(f"mode must be one of {OUTAGE_MODES}")
        assert self._loop is not None
        loop = self._loop
        method_set = None if methods is None else frozenset(methods)

        def run() -> None:
            self._end_outage()
            outage = Outage(mode, int(retry_after), method_set, asyncio.Event())
            outage.timer = loop.call_later(seconds, self._end_outage)
            self._faults.outage = outage
            listener = self._servers.pop("api", None) if mode == "refused" else None
            if listener is not None:
                listener.close()
                self._hold_api_port()
            if drop_connections:
                for conn in self._hub.open_connections():
                    conn.reset()

        self._call(run)

    def end_outage(self) -> None:
        self._call(self._end_outage)

    def _end_outage(self) -> None:
        outage, self._faults.outage = self._faults.outage, None
        if outage is None:
            return
        if outage.timer is not None:
            outage.timer.cancel()
        outage.ended.set()
        if outage.mode == "refused" and "api" not in self._servers:
            self._reopening = asyncio.ensure_future(self._open_api_listener(self.api_port))

    def outage_active(self) -> bool:
        """True while an outage lasts or the API listener has not come back yet."""
        return self._call(lambda: self._faults.outage is not None or "api" not in self._servers)

    def revoke(self, which: str = "app") -> None:
        """token_revoked from now on for the app or bot token; revoking the app token resets its sockets."""
        if which not in ("app", "bot"):
            raise ValueError("which must be 'app' or 'bot'")

        def run() -> None:
            self._faults.revoked.add(self.app_token if which == "app" else self.bot_token)
            if which == "app":
                for conn in self._hub.open_connections():
                    conn.reset()

        self._call(run)

    def unrevoke(self) -> None:
        self._call(self._faults.revoked.clear)

    def disable_socket_mode(self) -> None:
        def run() -> None:
            self._faults.link_disabled = True
            for conn in self._hub.open_connections():
                self._hub.disconnect(conn, "link_disabled")

        self._call(run)

    def enable_socket_mode(self) -> None:
        self._call(lambda: setattr(self._faults, "link_disabled", False))

    def lose_acks(self, count: int = 1) -> None:
        """The next `count` acks (whatever they ack) are lost on the wire: Slack retries those events."""

        def run() -> None:
            self._faults.lost_acks += count

        self._call(run)

    def lose_first_acks(self, fraction: float) -> None:
        """From now on each first attempt's ack is lost on the wire with probability `fraction` (seeded);
        0 turns it off. Slack then retries the event on any connection of the app."""
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        self._call(lambda: setattr(self._faults, "lost_first_ack_fraction", float(fraction)))

    def slow_api(self, delay_s: float, methods: Iterable[str] | None = None) -> None:
        method_set = None if methods is None else frozenset(methods)

        def run() -> None:
            self._faults.slow_delay_s = float(delay_s)
            self._faults.slow_methods = method_set

        self._call(run)

    def stall_handshake(self, on: bool = True) -> None:
        self._call(lambda: setattr(self._faults, "stall_handshake", bool(on)))

    def withhold_hello(self, on: bool = True) -> None:
        self._call(lambda: setattr(self._faults, "withhold_hello", bool(on)))

    # --- the Web API's rules ------------------------------------------------------------------------
    def set_rate_limits(
        self,
        on: bool | None = None,
        post_per_channel_per_s: float | None = None,
        post_burst: int | None = None,
        tier_per_minute: list[int] | None = None,
    ) -> dict[str, Any]:
        """Turn Slack's rate limits on or off, or change them (sandbox/limits.py); every bucket starts full.

        Args:
            on: True: 429 past a limit; False: no limit (what tests get from TEST_CONFIG); None: unchanged.
            post_per_channel_per_s: chat.postMessage's steady rate per channel (Slack: 1).
            post_burst: how many posts a channel's bucket holds (the burst; 4 by default).
            tier_per_minute: calls per minute of Tiers 1 to 4 (Slack: 1, 20, 50, 100).

        Returns the settings now in force (as `rate_limits()` does).
        """
        return self._call(
            lambda: self._webapi.limits.configure(on, post_per_channel_per_s, post_burst, tier_per_minute)
        )

    def rate_limits(self) -> dict[str, Any]:
        """The rate limits in force: on/off, the posting rate and burst, calls per minute by tier, the tiers."""
        return self._call(self._webapi.limits.settings)

    def fail_calls(
        self,
        every: int = 4,
        mode: str = "http_503",
        methods: Iterable[str] | None = ("chat.postMessage",),
        count: int | None = None,
    ) -> None:
        """Bad moments: every `every`-th call of `methods` fails. 0 ends it.

        Args:
            every: which calls fail (4: the 4th, 8th, …; 1: all); 0 turns the failures off.
            mode: `http_503` (503 service_unavailable, nothing done), `internal_error` / `fatal_error` (the
                call takes effect, e.g. the message IS posted, then HTTP 500 with that error), `cut` (it
                takes effect, then the connection closes without an answer).
            methods: the methods counted and failed; None: every Web API method.
            count: stop after this many failures (None: no end).
        """
        if mode not in FAILURE_MODES:
            raise ValueError(f"mode must be one of {FAILURE_MODES}")
        if int(every) < 0 or (count is not None and int(count) < 0):
            raise ValueError("every and count must not be negative")
        method_set = None if methods is None else frozenset(methods)
        limit = None if count is None else int(count)
        failure = None if int(every) == 0 else Failure(mode, int(every), method_set, limit)
        self._call(lambda: setattr(self._faults, "failure", failure))

    def set_scopes(self, scopes: str | list[str]) -> list[str]:
        """The bot token's scopes from now on (a list, or comma-separated). `sandbox.config.HISTORY_SCOPES`
        added to the default ones lets the bot read its conversations. Returns them."""
        granted = parse_scopes(scopes)
        self._call(lambda: setattr(self._webapi, "bot_scopes", granted))
        return list(granted)

    def scopes(self) -> list[str]:
        """The bot token's scopes (what every answer's `x-oauth-scopes` header says)."""
        return list(self._call(lambda: self._webapi.bot_scopes))

    # --- Slack itself -----------------------------------------------------------------------------
    def incident(self, seconds: float | None = None) -> None:
        """A Slack-side incident: from now on every new event (a mention, any `send_event`) is recorded in
        history but never delivered, not even retried, while every link stays up and `hello`s, pings and
        the Web API carry on. Its delivery ends as "dropped".

        Args:
            seconds: how long it lasts; None: until `end_incident`.
        """
        assert self._loop is not None
        loop = self._loop

        def run() -> None:
            self._end_incident()
            self._faults.incident = True
            if seconds is not None:
                self._incident_timer = loop.call_later(float(seconds), self._end_incident)

        self._call(run)

    def end_incident(self) -> None:
        """The incident is over: new events are delivered again (those it dropped stay dropped)."""
        self._call(self._end_incident)

    def incident_active(self) -> bool:
        return self._call(lambda: self._faults.incident)

    def _end_incident(self) -> None:
        self._faults.incident = False
        if self._incident_timer is not None:
            self._incident_timer.cancel()
            self._incident_timer = None
