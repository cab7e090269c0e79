"""The Socket Mode WebSocket server: handshake, hello, pings, per-connection faults, lifecycle.

Each modelled behaviour carries its source: [DOC] Slack's docs, [SDK] Slack's SDK source, [OBS] seen in
real traffic, [EXP] checked by experiment, [INF] inference (an assumption). docs/sandbox-model.md lists
them all.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket as pysocket
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from sandbox import payloads
from sandbox.config import SERVER_PING_PAYLOAD, SandboxConfig
from sandbox.faults import Faults
from sandbox.recorder import Recorder
from sandbox.records import ConnectionInfo

OPEN_STATES = ("open", "live", "draining", "silent")
REFUSED = "too_many_websockets"


class WsConnection(asyncio.Protocol):
    """One TCP connection on the WebSocket port. All methods run on the loop thread."""

    def __init__(self, hub: SocketHub) -> None:
        self.hub = hub
        self.proto = ServerProtocol(max_size=2**24)
        self.transport: asyncio.Transport | None = None
        self.info: ConnectionInfo | None = None
        self.silenced = False  # half-open: nothing crosses either way
        self.ended = False  # FIN sent without a close frame: nothing more goes out, what comes in is dropped
        self.stalled = False
        self.timers: list[asyncio.TimerHandle] = []
        self.app_token_id = "app"

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.info = self.hub.register(self, f"{peer[0]}:{peer[1]}" if peer else "")
        if self.hub.faults.stall_handshake:
            self.stalled = True
            self.hub.set_state(self, "stalled")

    @property
    def _deaf(self) -> bool:
        """Incoming bytes are dropped unread (protocol over, far end gone, path dead or handshake stalled)."""
        return self.silenced or self.ended or self.stalled or self.proto.state is State.CLOSED

    @property
    def _mute(self) -> bool:
        return self.silenced or self.ended or self.transport is None or self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        if self._deaf:
            return
        self.proto.receive_data(data)
        self._process_events()

    def eof_received(self) -> bool | None:
        if not self._deaf:
            self.proto.receive_eof()
            self._process_events()
        return False  # the client closed its side: let asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        if exc is not None:
            how = "client_reset"
        elif self.proto.close_rcvd is not None:
            how = f"client_close {self.proto.close_rcvd.code}"
        else:
            how = "client_closed"
        self.hub.closed(self, how)

    # --- wire ----------------------------------------------------------------------------------
    def _process_events(self) -> None:
        for event in self.proto.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
        self._flush()

    def _flush(self) -> None:
        data = self.proto.data_to_send()
        if self.silenced or self.ended or self.transport is None:
            return
        for chunk in data:
            if chunk:
                self.transport.write(chunk)
            elif self._client_closed_first():
                # After a close handshake the client started, Slack does not close TCP: the client
                # must [OBS: @slack/socket-mode 3.1.1/3.2.0 release notes; protocol notes §3.4].
                return
            else:  # end of stream requested by the protocol (our close, or a protocol error)
                self.transport.close()
                return

    def _client_closed_first(self) -> bool:
        return self.proto.close_rcvd is not None and self.proto.close_rcvd_then_sent is True

    def _handshake(self, request: Request) -> None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        ticket = (query.get("ticket") or [""])[0]
        response = self.proto.accept(request)
        if response.status_code == 101:
            problem = "" if url.path.rstrip("/") == "/link" else "unknown path"
            problem = problem or self.hub.redeem_ticket(ticket)
            if problem:
                response = self.proto.reject(403, f"{problem}\n")
        self.proto.send_response(response)
        self._flush()
        if response.status_code == 101:
            debug = (query.get("debug_reconnects") or [""])[0] == "true"
            self.hub.upgraded(self, ticket, debug_reconnects=debug)

    def _frame(self, frame: Frame) -> None:
        assert self.info is not None
        if frame.opcode is Opcode.TEXT:
            self.hub.on_text(self, frame.data.decode("utf-8", "replace"))
        elif frame.opcode is Opcode.PING:
            self.info.pings_received += 1  # the protocol object already queued the echoing pong
        elif frame.opcode is Opcode.PONG:
            self.info.pongs_received += 1
        elif frame.opcode is Opcode.CLOSE and self.proto.close_rcvd is not None:
            # Slack stops routing at once; the TCP connection stays until the client drops it.
            self.hub.mark_closing(self, f"client_close {self.proto.close_rcvd.code}")

    def send_json(self, message: dict[str, Any]) -> None:
        if self._mute:
            return
        self.proto.send_text(json.dumps(message).encode())
        self._flush()

    def send_raw(self, data: str | bytes) -> None:
        """One text (str) or binary (bytes) frame exactly as given: for malformed-input tests."""
        if self._mute:
            return
        if isinstance(data, bytes):
            self.proto.send_binary(data)
        else:
            self.proto.send_text(data.encode())
        self._flush()

    def send_ping(self) -> None:
        if self._mute:
            return
        self.proto.send_ping(SERVER_PING_PAYLOAD.encode())
        self._flush()

    # --- faults ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Abrupt RST, no close frame."""
        if self.transport is None or self.transport.is_closing():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_LINGER, struct.pack("ii", 1, 0))
        self.hub.mark_closing(self, "reset")
        self.transport.abort()

    def end(self) -> None:
        """The connection just ends: FIN, no close frame, as when a proxy or load balancer closes an idle
        tunnel quietly [INF]. Half-close: the sandbox keeps reading (and drops what arrives) and closes
        only when the client does, so the client's writes never draw an RST; an RST is `reset`."""
        if self.transport is None or self.transport.is_closing() or self.ended:
            return
        self.hub.mark_closing(self, "eof")
        self.ended = True
        self.transport.write_eof()  # shutdown(SHUT_WR) once the write buffer is flushed

    def drop(self, how: str) -> None:
        """Close TCP (FIN) without a close frame (on a dead path the FIN is lost: nothing reaches the client)."""
        if self.transport is None or self.transport.is_closing():
            return
        self.hub.mark_closing(self, how)
        if not self.silenced:
            self.transport.close()

    def close_frame(self, code: int, reason: str, timeout_s: float) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.hub.mark_closing(self, f"server_close {code}")
        if not self.silenced:
            self.proto.send_close(code, reason)
            self._flush()
        self.later(timeout_s, lambda: self.transport is not None and self.transport.close())

    def silence(self) -> None:
        if self.silenced or self.transport is None:
            return
        self.silenced = True
        self.transport.pause_reading()

    def later(self, delay: float, fn: Callable[[], object]) -> None:
        self.timers.append(asyncio.get_running_loop().call_later(delay, fn))


class SocketHub:
    """Knows every WebSocket connection of the (single) app; applies lifecycle rules."""

    def __init__(self, config: SandboxConfig, recorder: Recorder, faults: Faults) -> None:
        self.config = config
        self.recorder = recorder
        self.faults = faults
        self.conns: dict[str, WsConnection] = {}
        self.tickets: dict[str, float] = {}  # ticket -> issued_at (monotonic)
        self._next_id = 0
        self.on_ack: Callable[[WsConnection, dict[str, Any]], None] = lambda conn, msg: None
        self.on_routable_change: Callable[[], None] = lambda: None

    # --- bookkeeping ---------------------------------------------------------------------------
    def register(self, conn: WsConnection, peer: str) -> ConnectionInfo:
        self._next_id += 1
        info = ConnectionInfo(id=f"c{self._next_id}", opened_at=time.monotonic(), peer=peer)
        with self.recorder.lock:
            self.recorder.connections[info.id] = info
        self.conns[info.id] = conn
        self.recorder.changed()
        return info

    def set_state(self, conn: WsConnection, state: str, **fields: Any) -> None:
        assert conn.info is not None
        with self.recorder.lock:
            conn.info.state = state
            for key, value in fields.items():
                setattr(conn.info, key, value)
        self.recorder.changed()

    def mark_closing(self, conn: WsConnection, how: str) -> None:
        assert conn.info is not None
        if conn.info.close_how is None:
            self.set_state(conn, "closed", close_how=how)
            self.on_routable_change()

    def closed(self, conn: WsConnection, how: str) -> None:
        assert conn.info is not None
        self.conns.pop(conn.info.id, None)
        self.set_state(conn, "closed", closed_at=time.monotonic(), close_how=conn.info.close_how or how)
        self.on_routable_change()

    def open_connections(self) -> list[WsConnection]:
        return [c for c in self.conns.values() if c.info is not None and c.info.state in OPEN_STATES]

    def believed_alive(self) -> list[WsConnection]:
        """Connections "Slack" counts for the app: open ones, silent (dead) ones it has not noticed yet,
        and draining ones, but not one it refused with too_many_websockets. This is `hello`'s
        num_connections and what the 10-connection cap counts [OBS: python-slack-sdk #1940 shows ghost
        connections counted; INF: which states count]."""
        return [c for c in self.open_connections() if c.info is not None and c.info.disconnect_reason != REFUSED]

    def routable(self) -> list[WsConnection]:
        """Connections "Slack" believes can take envelopes: hello sent, no disconnect sent."""
        return [c for c in self.conns.values() if c.info is not None and c.info.live]

    def issue_ticket(self) -> str:
        now = time.monotonic()
        for ticket, issued in list(self.tickets.items()):
            if now - issued > self.config.ticket_ttl_s:
                del self.tickets[ticket]
        ticket = payloads.new_envelope_id()
        self.tickets[ticket] = now
        return ticket

    def redeem_ticket(self, ticket: str) -> str:
        issued = self.tickets.pop(ticket, None)
        if issued is None:
            return "unknown or already used ticket"
        if time.monotonic() - issued > self.config.ticket_ttl_s:
            return "expired ticket"
        return ""

    # --- lifecycle -----------------------------------------------------------------------------
    def upgraded(self, conn: WsConnection, ticket: str, *, debug_reconnects: bool) -> None:
        assert conn.info is not None
        others = len([c for c in self.believed_alive() if c is not conn])
        self.set_state(conn, "open", ticket=ticket, upgraded_at=time.monotonic())
        conn.later(self.config.server_ping_interval_s, lambda: self._ping_tick(conn))
        if self.faults.link_disabled:
            self.disconnect(conn, "link_disabled")
            return
        if others >= self.config.max_connections:
            # Sent on the new connection instead of hello, then TCP is dropped [OBS: bolt-js #2225 (Slack
            # staff on the cap of 10), java-slack-sdk #1223 (disconnect before hello, then 1006)].
            self.disconnect(conn, REFUSED)
            return
        if self.faults.withhold_hello:
            return
        lifetime = 360.0 if debug_reconnects else self.config.connection_lifetime_s
        conn.send_json(payloads.hello(others + 1, round(lifetime)))
        self.set_state(conn, "live", hello_at=time.monotonic())
        conn.later(lifetime, lambda: self.disconnect(conn, "warning"))
        self.on_routable_change()

    def _ping_tick(self, conn: WsConnection) -> None:
        if conn.info is None or conn.info.state not in OPEN_STATES:
            return
        conn.send_ping()
        conn.later(self.config.server_ping_interval_s, lambda: self._ping_tick(conn))

    def disconnect(self, conn: WsConnection, reason: str) -> None:
        """Send a disconnect message, stop routing there, then drop TCP after the grace period."""
        assert conn.info is not None
        if conn.info.state not in OPEN_STATES:
            return
        if conn.info.state == "draining" and reason == "warning":
            return
        conn.send_json(payloads.disconnect(reason))
        self.set_state(conn, "draining", disconnect_reason=reason, disconnect_at=time.monotonic())
        self.on_routable_change()
        if reason == "warning":
            conn.later(self.config.warning_grace_s, lambda: self._after_warning(conn))
        else:
            conn.later(self.config.refresh_grace_s, lambda: conn.drop(f"dropped after {reason}"))

    def _after_warning(self, conn: WsConnection) -> None:
        if conn.info is None or conn.info.state != "draining":
            return
        conn.send_json(payloads.disconnect("refresh_requested"))
        self.set_state(conn, "draining", disconnect_reason="refresh_requested")
        conn.later(self.config.refresh_grace_s, lambda: conn.drop("dropped after refresh_requested"))

    def silence(self, conn: WsConnection) -> None:
        """The network path dies (half-open). Nothing crosses either way; "Slack" goes on counting the
        connection and routing envelopes and retries to it until it notices, `silent_link_alive_s`
        later (see SandboxConfig for why that default)."""
        assert conn.info is not None
        if conn.silenced or conn.info.state not in OPEN_STATES:
            return
        conn.silence()
        state = "silent" if conn.info.state == "live" else conn.info.state
        self.set_state(conn, state, silenced_at=time.monotonic())
        if math.isfinite(self.config.silent_link_alive_s):
            conn.later(self.config.silent_link_alive_s, lambda: self._silent_timeout(conn))

    def _silent_timeout(self, conn: WsConnection) -> None:
        """ "Slack" gives up on the dead link. Nothing reaches the client; the socket stays open."""
        assert conn.info is not None
        if conn.info.state in ("silent", "draining", "open"):
            self.set_state(conn, "closed", closed_at=time.monotonic(), close_how="silent_timeout")
            self.on_routable_change()

    # --- messages ------------------------------------------------------------------------------
    def on_text(self, conn: WsConnection, text: str) -> None:
        assert conn.info is not None
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
            self.on_ack(conn, message)
        else:
            with self.recorder.lock:
                conn.info.other_messages.append(text[:1000])
            self.recorder.changed()

    def shutdown(self) -> None:
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.transport.abort()
