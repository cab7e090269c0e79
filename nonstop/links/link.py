"""One Socket Mode WebSocket link: ticket URL → handshake → hello → frames, until it dies.

A `Link` never reconnects by itself; the supervisor decides what happens next. It knows exactly one
thing the stock clients get wrong: a link is alive only while Slack is *talking* on it. Whatever comes
in (hello, envelope, disconnect, Slack's ping, the pong to ours: any bytes) refreshes `last_inbound`;
a ping goes out every `ping_interval_s`. A ping left unanswered for `pong_timeout_s`, with nothing else
in since, makes the link *suspect*: the supervisor opens its replacement at once but keeps this one,
since it may only be slow; anything that comes in clears the suspicion. When nothing has come in for
`stale_after_s` the link is declared half-open and aborted. Close frames, resets and EOF are seen the
moment the kernel reports them (asyncio), so there is no polling loop and no spinning on a dead socket.

The public API of `websockets` does the work (`connect`, `recv`, `send`, `close`, the
`ConnectionClosed` exceptions), with the library's own frame-size cap: a frame larger than
`max_frame_bytes` ends the link with close code 1009 and one line that names the cap. Documented lower
layers are used where the public one has no equivalent, all pinned by a contract test: the connection's
Sans-I/O `protocol` and asyncio `transport` to write a turn's acks, or a ping, in one system call; the
`transport` to drop a dead path without a close handshake; and a `ClientConnection` subclass (passed
as `create_connection`) whose `data_received` shows the link every byte Slack sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import Close
from websockets.protocol import State

from nonstop.links.ends import LinkEnd, LinkFailed, closed_end
from nonstop.links.frames import DEFAULT_MAX_FRAME_BYTES, parse_frame
from nonstop.links.writer import FrameWriter
from nonstop.net import network
from nonstop.redact import redact

log = logging.getLogger("nonstop.links.link")

CLOSE_TIMEOUT_S = 1.0
"""How long a closing handshake may take before the TCP connection is dropped (as connect()'s close_timeout)."""

LATE_TIMER_S = 0.1
"""A pong deadline that fires this late ran on a busy loop: judge again `RECHECK_S` later instead."""
RECHECK_S = 0.05

EnvelopeCallback = Callable[["Link", dict[str, Any], str], None]  # the envelope parsed, and as received
FrameCallback = EnvelopeCallback  # every JSON frame (hello, disconnect, envelopes), for a tap: must not raise


class _Connection(ClientConnection):
    """A `ClientConnection` that shows the link every chunk of bytes Slack sends, before websockets parses it.

    Any bytes from Slack prove the path alive, so this one hook replaces a callback per frame and a
    future per ping (see `Link.ping`). `create_connection` is `connect()`'s documented way in."""

    heard: Callable[[bytes], None] | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # first: whatever the hook does, the library's stream stays whole
        if self.heard is not None:
            self.heard(data)


class Link:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        on_envelope: EnvelopeCallback,
        ping_interval_s: float,
        stale_after_s: float,
        pong_timeout_s: float | None = None,
        on_suspect: Callable[[Link, bool], None] | None = None,
        on_inbound: Callable[[], None] | None = None,
        on_rtt: Callable[[float], None] | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        websocket_options: dict[str, Any] | None = None,
        on_frame: FrameCallback | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._on_envelope = on_envelope
        self._ping_interval_s = ping_interval_s
        self._stale_after_s = stale_after_s
        self._pong_timeout_s = stale_after_s if pong_timeout_s is None else min(pong_timeout_s, stale_after_s)
        self._pong_overdue: asyncio.TimerHandle | None = None  # armed by a ping, disarmed by any frame
        self._closing_since: float | None = None
        self._on_suspect = on_suspect or (lambda _link, _suspect: None)
        self.suspect_since: float | None = None  # when it turned suspect; None while it is heard from
        self.suspected = asyncio.Event()
        self._on_inbound = on_inbound or (lambda: None)
        self._on_rtt = on_rtt or (lambda _ms: None)
        self._max_frame_bytes = max_frame_bytes
        self._ws_options = websocket_options  # proxy and TLS; None: the environment's (nonstop.net.network)
        self._on_frame = on_frame
        self._ws: _Connection | None = None
        self._loop = asyncio.get_running_loop()  # each get_running_loop() is a getpid() system call
        self._ping_sent: float | None = None  # while the pong to the last ping is awaited, for the RTT
        self._pong = b""  # that pong as it will appear on the wire
        self._end_cause: LinkEnd | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writer = FrameWriter(name)
        self._close_sent: Close | None = None
        self._close_rcvd: Close | None = None
        self.hello: dict[str, Any] = {}
        self.opened_at = time.monotonic()
        self.live_at: float | None = None
        self.last_inbound = time.monotonic()
        self.refresh_requested = asyncio.Event()
        self.refresh_reason = ""
        self.ended: asyncio.Future[LinkEnd] = self._loop.create_future()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self, timeout_s: float) -> None:
        """Handshake and wait for `hello`; raise `LinkFailed` if that does not happen within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                # Our own ping/watchdog replaces the library keepalive: it also counts data and hello as
                # signs of life and aborts instead of attempting a close handshake on a dead path.
                ws = await connect(
                    self._url,
                    create_connection=_Connection,
                    ping_interval=None,
                    ping_timeout=None,
                    close_timeout=1,
                    compression=None,
                    max_size=self._max_frame_bytes,
                    open_timeout=None,
                    user_agent_header="nonstop (websockets)",
                    **(self._ws_options or network.current().websocket_options(self._url)),  # as the Web API's
                )
                assert isinstance(ws, _Connection)
                self._ws = ws
                self._writer.attach(ws)
                ws.heard = self._heard
                self._mark_inbound(time.monotonic())  # the handshake's answer (and what came with it) was Slack's
                await self._await_hello()
        except TimeoutError:
            stage = "no hello from Slack" if self._ws is not None else "WebSocket handshake did not complete"
            await self._discard()
            raise LinkFailed("connect_timeout", f"{stage} within {timeout_s:.1f} s") from None
        except (LinkFailed, asyncio.CancelledError):  # cancelled: the pool stops; no socket may outlive it
            await self._discard()
            raise
        except (OSError, WebSocketException) as e:  # refused, reset, TLS, HTTP 403 on the upgrade, bad URL, …
            await self._discard()
            problem = network.current().problem(e, self._url)  # a certificate or proxy login: not worth retrying
            if problem is not None:
                raise LinkFailed(problem.cause, problem.detail) from None
            raise LinkFailed("handshake_failed", redact(f"{type(e).__name__}: {e}")) from None
        self.live_at = time.monotonic()
        self._tasks = [asyncio.create_task(self._read(), name=f"{self.name}-reader")]

    async def _await_hello(self) -> None:
        assert self._ws is not None
        while True:
            raw = await self._ws.recv()
            message = self._parse(raw)
            if message is None:
                continue
            kind = message.get("type")
            if kind == "hello":
                self.hello = message
                return
            if kind == "disconnect":
                reason = str(message.get("reason", ""))
                raise LinkFailed(reason or "disconnect", f"Slack sent disconnect ({reason}) instead of hello")
            if "envelope_id" in message:
                self._deliver(message, raw)

    def _parse(self, raw: str | bytes) -> dict[str, Any] | None:
        message = parse_frame(raw, self.name)
        if message is not None and self._on_frame is not None:
            self._on_frame(self, message, raw if isinstance(raw, str) else raw.decode())
        return message

    def _deliver(self, message: dict[str, Any], raw: str | bytes) -> None:
        try:
            self._on_envelope(self, message, raw if isinstance(raw, str) else raw.decode())
        except Exception:  # one bad envelope must not take the link (and every later envelope) down
            envelope_id = str(message.get("envelope_id"))
            log.exception(
                "%s: handing over envelope %s failed",
                self.name,
                envelope_id,
                extra={"connection": self.name, "envelope_id": envelope_id},
            )

    def _heard(self, data: bytes) -> None:
        now = time.monotonic()
        # A pong is 6 bytes and arrives whole; in the rare case it is split across reads, the link is still
        # proven alive by the bytes, only this RTT sample is lost.
        if self._ping_sent is not None and self._pong in data:
            self._on_rtt((now - self._ping_sent) * 1000)
            self._ping_sent = None
        self._mark_inbound(now)

    def _mark_inbound(self, now: float) -> None:
        self.last_inbound = now
        self._on_inbound()
        if self._pong_overdue is not None:
            self._pong_overdue.cancel()
            self._pong_overdue = None
        if self.suspect_since is not None:  # a false alarm: it was only slow
            self.suspect_since = None
            self.suspected.clear()
            self._on_suspect(self, False)

    async def _read(self) -> None:
        assert self._ws is not None
        end: LinkEnd
        try:
            while True:
                raw = await self._ws.recv()  # `_heard` has marked it inbound already
                message = self._parse(raw)
                if message is None:
                    continue
                if message.get("type") == "disconnect":
                    self._on_disconnect(str(message.get("reason", "")))
                elif "envelope_id" in message:
                    self._deliver(message, raw)
        except ConnectionClosed as closed:
            self._close_sent, self._close_rcvd = closed.sent, closed.rcvd
            end = self._closed_end()
        except Exception as e:  # the reader must never die silently: the supervisor replaces the link
            log.exception("%s: reader failed", self.name, extra={"connection": self.name})
            end = LinkEnd("error", redact(f"reader failed: {type(e).__name__}: {e}"))
            self._abort_transport()
        self._finish(end)

    def _on_disconnect(self, reason: str) -> None:
        if reason in ("link_disabled", "too_many_websockets"):
            self._end_cause = LinkEnd(reason, f"Slack sent disconnect ({reason})")
            self._abort_transport()
            return
        log.info(
            "%s: Slack asked for a new connection (disconnect: %s)",
            self.name,
            reason or "no reason",
            extra={"connection": self.name, "reason": reason or "disconnect"},
        )
        self.refresh_reason = reason or "disconnect"
        self.refresh_requested.set()

    def pulse(self, now: float) -> float | None:
        """Abort the link if nothing at all has come in for too long.

        The supervisor calls this for every link from one timer (see `Supervisor._pulse`), which
        also pings them, so an idle bot wakes once per ping interval in all. Returns when the link
        would turn stale, or None once aborted.
        """
        if self.ended.done() or self._ws is None:
            return None
        if self._ws.state is State.CLOSING:
            # A close we started (a frame above the cap, say) waits for Slack to drop TCP, which it may
            # never do on a dead path: give it the close timeout, then drop it ourselves.
            self._closing_since = self._closing_since or now
            if now - self._closing_since > CLOSE_TIMEOUT_S:
                self._abort_transport()
        silent_for = now - self.last_inbound
        if silent_for > self._stale_after_s:
            self.abort(
                LinkEnd(
                    "half_open",
                    f"no frame from Slack for {silent_for:.1f} s (half-open link: no pong, no data, no close)",
                )
            )
            return None
        return self.last_inbound + self._stale_after_s + 0.01

    @property
    def suspect(self) -> bool:
        return self.suspect_since is not None

    def ping(self) -> None:
        """Send one ping and arm its deadline; its pong, or any other bytes from Slack, disarm it.

        Called by the pulse for every link at once, and an idle bot does little else, so it costs as
        little as it can: the frame is written straight to the transport, like the acks
        (`nonstop.links.writer`), and the pong needs no future of its own, as any bytes that come in prove
        the link alive (`_heard`), the pong among them. The deadline is a timer that a healthy link cancels
        before it fires. A link whose earlier writes have not left yet gets no new ping, only the deadline."""
        ws = self._ws
        if ws is None or self.ended.done() or ws.state is not State.OPEN:
            return
        sent = time.monotonic()
        if self._pong_overdue is None:
            due = sent + self._pong_timeout_s
            self._pong_overdue = self._loop.call_at(due, self._overdue, due)
        pong = self._writer.ping()
        if pong is not None:
            self._ping_sent, self._pong = sent, pong

    def _overdue(self, due: float) -> None:
        """A ping's deadline passed with no frame since. A loop that ran this timer late was busy and
        may not have read what is waiting on the socket: a busy bot is not a silent peer, so look
        again once it has caught up."""
        now = time.monotonic()
        if self.ended.done():
            self._pong_overdue = None
            return
        if now - due > LATE_TIMER_S:
            self._pong_overdue = self._loop.call_at(now + RECHECK_S, self._overdue, now + RECHECK_S)
            return
        self._pong_overdue = None
        if self.suspect_since is None:
            self.suspect_since = now
            self.suspected.set()
            self._on_suspect(self, True)

    def _closed_end(self) -> LinkEnd:
        if self._end_cause is not None:
            return self._end_cause
        end = closed_end(
            self._close_sent, self._close_rcvd, self.refresh_reason if self.refresh_requested.is_set() else None
        )
        if end.cause == "frame_too_big":
            log.error(
                "%s: Slack sent a frame larger than the cap of %d bytes; closed the link with 1009 (message too "
                "big). Raise NONSTOP_MAX_FRAME_BYTES if such envelopes are expected",
                self.name,
                self._max_frame_bytes,
                extra={"connection": self.name, "cause": "frame_too_big"},
            )
        return end

    def _finish(self, end: LinkEnd) -> None:
        if self._pong_overdue is not None:
            self._pong_overdue.cancel()
            self._pong_overdue = None
        if not self.ended.done():
            self.ended.set_result(end)
        self._writer.cancel()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    # -- actions -----------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self.ended.done()

    @property
    def age_s(self) -> float:
        return time.monotonic() - (self.live_at or self.opened_at)

    def send_soon(self, text: str, on_failure: Callable[[], None]) -> bool:
        """Queue one text frame; the frames queued in one loop turn leave together, in order, in one write
        (`nonstop.links.writer`). False, with nothing queued, if the link is gone; `on_failure` runs for every
        frame that could not be written (the peer is not reading: a dead path, most likely).
        """
        if not self.is_open:
            return False
        self._writer.queue(text, on_failure)
        return True

    def flush(self) -> None:
        """Write what `send_soon` queued now, instead of at the end of the loop turn: the pipeline calls it
        right after admitting a batch, so its acks do not wait one more loop iteration."""
        self._writer.flush()

    async def send(self, text: str, timeout_s: float = 1.0) -> bool:
        """Send one text frame, waiting for the peer; False if the link is gone or could not take it in time."""
        return self.is_open and await self._writer.send(text, timeout_s)

    def abort(self, end: LinkEnd) -> None:
        """Drop the TCP connection now, without a close handshake (it could hang on a dead path)."""
        if self._end_cause is None:
            self._end_cause = end
        self._abort_transport()
        if self.ended.done() or self._ws is None:
            self._finish(end)

    async def close(self, end: LinkEnd, timeout_s: float = 1.0) -> None:
        """Say goodbye with a 1000 close frame, but never wait on it for more than `timeout_s`."""
        if self._end_cause is None:
            self._end_cause = end
        if self._ws is not None and not self.ended.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(1000, end.cause), timeout_s)
        self.abort(end)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.ended), timeout_s)

    def _abort_transport(self) -> None:
        if self._ws is not None:
            self._ws.transport.abort()

    async def _discard(self) -> None:
        self._abort_transport()
        self._finish(LinkEnd("error", "never became live"))
