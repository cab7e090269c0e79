"""`Sandbox`: a local Slack (Web API + Socket Mode) running on a background event-loop thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sandbox import payloads
from sandbox.config import APP_ID, BOT_USER_ID, GENERAL_CHANNEL, HUMAN_USER_ID, TEAM_ID, SandboxConfig
from sandbox.control import make_control_handler
from sandbox.delivery import Router
from sandbox.faults import DISCONNECT_REASONS, OUTAGE_MODES, Faults, Outage
from sandbox.ports import HOLDS, hold_port
from sandbox.recorder import Recorder
from sandbox.records import Ack, ApiCall, ConnectionInfo, Delivery, DeliveryRecord
from sandbox.socket import SocketHub, WsConnection
from sandbox.tls import SandboxTLS
from sandbox.webapi import WebApi

T = TypeVar("T")
BACKLOG = 1024


class Sandbox:
    """A faithful local Slack with fault injection. Every public method is thread-safe."""

    def __init__(self, config: SandboxConfig | None = None, tls: SandboxTLS | None = None) -> None:
        self.config = config or SandboxConfig()
        self.tls = tls  # None: plain http:// and ws://, as before; else https:// and wss:// (see sandbox/tls.py)
        self._ssl = tls.server_context() if tls is not None else None
        rng = random.Random(self.config.seed)
        secret = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))
        self.bot_token = f"xoxb-sandbox-{secret}"  # obviously fake: secret scanners stay quiet
        self.app_token = f"xapp-1-sandbox-{secret}{secret[:8]}"
        self._recorder = Recorder()
        self._faults = Faults(rng=random.Random(f"lost-acks-{self.config.seed}"))
        self._hub = SocketHub(self.config, self._recorder, self._faults)
        self._router = Router(self.config, self._recorder, self._faults, self._hub)
        self._webapi = WebApi(
            config=self.config,
            recorder=self._recorder,
            faults=self._faults,
            hub=self._hub,
            tokens={self.bot_token: "bot", self.app_token: "app"},
            ws_url=lambda: f"{'wss' if tls else 'ws'}://{self.config.host}:{self.ws_port}",
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict[str, asyncio.AbstractServer] = {}
        self.api_port = 0
        self.ws_port = 0
        self.control_port = 0
        self._seq = 0
        # Slack's event ids never repeat. A bot with a durable ledger remembers the ids it handled, so a
        # second sandbox session must not reuse the first one's: each session gets its own id prefix.
        self._event_prefix = "Ev" + secrets.token_hex(3).upper()
        self._reopening: asyncio.Future[None] | None = None
        self._api_hold: socket.socket | None = None  # the API port, kept bound while a refused outage closes it

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def web_url(self) -> str:
        """Where the Web API listener answers (also the base of response_url)."""
        return f"{'https' if self.tls else 'http'}://{self.config.host}:{self.api_port}"

    @property
    def api_url(self) -> str:
        return f"{self.web_url}/api/"

    @property
    def control_url(self) -> str:
        return f"http://{self.config.host}:{self.control_port}/_sandbox/"

    def start(self) -> Sandbox:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup())
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(None)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="sandbox-loop", daemon=True)
        self._thread.start()
        ready.result(timeout=10)
        return self

    async def _startup(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        self._webapi.control = make_control_handler(self)
        ws = await loop.create_server(
            lambda: WsConnection(self._hub), cfg.host, cfg.ws_port, reuse_address=True, backlog=BACKLOG, ssl=self._ssl
        )
        self._servers["ws"] = ws
        self.ws_port = ws.sockets[0].getsockname()[1]
        await self._open_api_listener(cfg.api_port)
        # Plain http even with TLS on: the control API is the harness's side door, not part of "Slack".
        control = await asyncio.start_server(
            self._webapi.handle_client, cfg.host, cfg.control_port, reuse_address=True, backlog=BACKLOG
        )
        self._servers["control"] = control
        self.control_port = control.sockets[0].getsockname()[1]

    async def _open_api_listener(self, port: int) -> None:
        api = await asyncio.start_server(
            self._webapi.handle_client, self.config.host, port, reuse_address=True, backlog=BACKLOG, ssl=self._ssl
        )
        self.api_port = api.sockets[0].getsockname()[1]
        outage = self._faults.outage
        if outage is not None and outage.mode == "refused":  # a new refused outage began meanwhile
            api.close()
            self._hold_api_port()
            return
        self._servers["api"] = api
        if self._api_hold is not None:
            self._api_hold.close()
            self._api_hold = None

    def _hold_api_port(self) -> None:
        """While the API port is closed, keep it bound without listening (connections are still refused),
        so that no other listener on the machine, a parallel test's, takes it before it comes back
        (`sandbox.ports`)."""
        if HOLDS and self._api_hold is None:
            self._api_hold = hold_port(self.config.host, self.api_port)

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            self._thread = None

    async def _shutdown(self) -> None:
        self._router.shutdown()
        if self._faults.outage is not None:
            self._faults.outage.ended.set()
        for server in self._servers.values():
            server.close()
        if self._api_hold is not None:
            self._api_hold.close()
            self._api_hold = None
        self._hub.shutdown()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn on the loop thread and return its result (directly when already there)."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    # --- users talking to the bot --------------------------------------------------------------
    def mention(
        self,
        text: str,
        channel: str = GENERAL_CHANNEL,
        user: str = HUMAN_USER_ID,
        thread_ts: str | None = None,
        bot_id: str | None = None,
    ) -> Delivery:
        """A user writes "<@bot> text": an app_mention event over Socket Mode."""

        def run() -> Delivery:
            ts = self._webapi.clock.next()
            event = payloads.mention_event(
                text=text, channel=channel, user=user, ts=ts, thread_ts=thread_ts, bot_id=bot_id
            )
            return self._start_event(event)

        return self._call(run)

    def mentions(self, texts: list[str], channel: str = GENERAL_CHANNEL, user: str = HUMAN_USER_ID) -> list[Delivery]:
        """Many users mention the bot at the same instant: every envelope is written in one turn of the
        sandbox's loop (one control request), not one request per mention."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings")

        def run() -> list[Delivery]:
            out = []
            for text in texts:
                ts = self._webapi.clock.next()
                event = payloads.mention_event(
                    text=text, channel=channel, user=user, ts=ts, thread_ts=None, bot_id=None
                )
                out.append(self._start_event(event))
            return out

        return self._call(run)

    def send_event(self, event: dict[str, Any]) -> Delivery:
        """Deliver any Events API `event` (ts/event_ts filled in when missing)."""

        def run() -> Delivery:
            full = dict(event)
            full.setdefault("ts", self._webapi.clock.next())
            full.setdefault("event_ts", full["ts"])
            return self._start_event(full)

        return self._call(run)

    def _start_event(self, event: dict[str, Any]) -> Delivery:
        self._seq += 1
        event_id = f"{self._event_prefix}{self._seq:05d}"
        payload = payloads.event_callback(event, event_id)
        record = DeliveryRecord(event_id, "events_api", event_id, payloads.events_api_envelope(payload, 0, ""))
        envelope_id = self._router.start(record)
        return Delivery(
            key=event_id,
            kind="events_api",
            event_id=event_id,
            ts=event.get("ts"),
            channel=event.get("channel"),
            user=event.get("user"),
            text=event.get("text"),
            thread_ts=event.get("thread_ts"),
            envelope_id=envelope_id,
        )

    def slash_command(
        self, text: str = "", command: str = "/nonstop", channel: str = GENERAL_CHANNEL, user: str = HUMAN_USER_ID
    ) -> Delivery:
        def run() -> Delivery:
            self._seq += 1
            n = self._seq
            response_url = f"{self.web_url}/commands/{TEAM_ID}/{1000 + n}/{n:06x}ab"
            trigger_id = f"{1000 + n}.{2000 + n}.{n:032x}"
            payload = payloads.slash_command(
                command=command, text=text, channel=channel, user=user, response_url=response_url, trigger_id=trigger_id
            )
            key = f"Cmd{n:05d}"
            record = DeliveryRecord(key, "slash_commands", None, payloads.slash_envelope(payload, ""))
            envelope_id = self._router.start(record)
            return Delivery(
                key, "slash_commands", None, None, channel, user, text, None, envelope_id, response_url, trigger_id
            )

        return self._call(run)

    def interactive(self, payload: dict[str, Any]) -> Delivery:
        def run() -> Delivery:
            self._seq += 1
            key = f"Int{self._seq:05d}"
            body = dict(payload)
            body.setdefault("api_app_id", APP_ID)
            body.setdefault("team", {"id": TEAM_ID, "domain": "emulated"})
            body.setdefault("user", {"id": HUMAN_USER_ID, "username": "alice", "team_id": TEAM_ID})
            body.setdefault("token", "ZZZZZZWSxiZZZ2yIvs3peJ")
            body.setdefault("trigger_id", f"{1000 + self._seq}.{2000 + self._seq}.{self._seq:032x}")
            if body.get("type") == "block_actions" and (body.get("container") or {}).get("type") != "view":
                body.setdefault("response_url", f"{self.web_url}/actions/{APP_ID}/1/{key}")
            record = DeliveryRecord(key, "interactive", None, payloads.interactive_envelope(body, ""))
            envelope_id = self._router.start(record)
            channel = (body.get("channel") or {}).get("id")
            user = (body.get("user") or {}).get("id")
            return Delivery(
                key, "interactive", None, None, channel, user, None, None, envelope_id, body.get("response_url"),
                body["trigger_id"],
            )  # fmt: skip

        return self._call(run)

    # --- the App Home ---------------------------------------------------------------------------
    def open_app_home(self, user: str = HUMAN_USER_ID) -> Delivery:
        """`user` opens the bot's Home tab: an app_home_opened event (with the view published so far)."""

        def run() -> Delivery:
            view = self._webapi.home_views.get(user)
            event = payloads.app_home_opened_event(user=user, event_ts=self._webapi.clock.next(), view=view)
            return self._start_event(event)

        return self._call(run)

    def click(self, action_id: str, user: str = HUMAN_USER_ID) -> Delivery:
        """`user` clicks the element `action_id` in the Home view published for them: block_actions."""

        def run() -> Delivery:
            view = self._webapi.home_views.get(user)
            if view is None:
                raise LookupError(f"no Home view published for {user}: open_app_home first")
            for block in view.get("blocks", []):
                for element in block.get("elements", []) + ([block["accessory"]] if "accessory" in block else []):
                    if isinstance(element, dict) and element.get("action_id") == action_id:
                        return self.interactive(
                            payloads.block_actions_from_view(
                                view=view, block=block, element=element, user=user, action_ts=self._webapi.clock.next()
                            )
                        )
            raise LookupError(f"no element with action_id {action_id!r} in the Home view of {user}")

        return self._call(run)

    def home_view(self, user: str = HUMAN_USER_ID) -> dict[str, Any] | None:
        """The Home view last published for `user` (None before the first views.publish)."""
        return self._call(lambda: self._webapi.home_views.get(user))

    # --- inspection ----------------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[ApiCall]:
        with self._recorder.lock:
            return [c.snapshot() for c in self._recorder.calls if method is None or c.method == method]

    def connections(self, live_only: bool = False) -> list[ConnectionInfo]:
        with self._recorder.lock:
            conns = list(self._recorder.connections.values())
            return [c.snapshot() for c in conns if not live_only or c.live]

    def deliveries(self) -> list[DeliveryRecord]:
        with self._recorder.lock:
            return [d.snapshot() for d in self._recorder.deliveries.values()]

    def delivery(self, d: Delivery | str) -> DeliveryRecord:
        key = d if isinstance(d, str) else d.key
        with self._recorder.lock:
            return self._recorder.deliveries[key].snapshot()

    def bot_messages(self) -> list[ApiCall]:
        """Successful chat.postMessage calls (the bot's visible replies)."""
        return [c for c in self.calls("chat.postMessage") if c.ok]

    def replies_to(self, d: Delivery) -> list[ApiCall]:
        """The bot's messages in the thread of the delivered message (thread_ts == its ts)."""
        return [c for c in self.bot_messages() if d.ts is not None and c.params.get("thread_ts") == d.ts]

    def handled_counts(self) -> dict[str, int]:
        """event_id -> number of bot replies threaded under that event's message."""
        replies: dict[str, int] = {}
        for call in self.bot_messages():
            thread_ts = call.params.get("thread_ts")
            if thread_ts:
                replies[str(thread_ts)] = replies.get(str(thread_ts), 0) + 1
        with self._recorder.lock:
            events = [
                (r.event_id, r.envelope["payload"]["event"].get("ts"))
                for r in self._recorder.deliveries.values()
                if r.kind == "events_api" and r.event_id
            ]
        return {event_id: replies.get(ts, 0) for event_id, ts in events}

    def subscribe(self, callback: Callable[[ApiCall], None]) -> Callable[[], None]:
        """callback(call) for every answered Web API call (on the sandbox thread). Returns unsubscribe."""
        self._recorder.add_call_listener(callback)
        return lambda: self._recorder.remove_call_listener(callback)

    # --- waiting -------------------------------------------------------------------------------
    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
        return self._recorder.wait(predicate, timeout, lambda: what)

    def wait_for_message(
        self,
        text_contains: str | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
        timeout: float = 10,
        after: float | None = None,
    ) -> ApiCall:
        """The first chat.postMessage by the bot matching all given filters (`after`: monotonic time)."""

        def matches(c: ApiCall) -> bool:
            return (
                (text_contains is None or text_contains in str(c.params.get("text", "")))
                and (channel is None or c.params.get("channel") == channel)
                and (thread_ts is None or c.params.get("thread_ts") == thread_ts)
                and (after is None or c.at >= after)
            )

        def check() -> ApiCall | None:
            return next((c for c in self.bot_messages() if matches(c)), None)

        def describe() -> str:
            seen = [(c.params.get("channel"), c.params.get("thread_ts"), c.params.get("text")) for c in self.calls()
                    if c.method == "chat.postMessage"]  # fmt: skip
            return (
                f"chat.postMessage text_contains={text_contains!r} channel={channel!r} thread_ts={thread_ts!r}; "
                f"seen postMessage (channel, thread_ts, text): {seen[-10:]}; methods called: {self._methods_seen()}"
            )

        return self._recorder.wait(check, timeout, describe)

    def wait_for_ack(self, d: Delivery, timeout: float = 10) -> Ack:
        def check() -> Ack | None:
            r = self.delivery(d)
            if r.acked_at is None:
                return None
            attempt = next(a for a in r.attempts if a.envelope_id == r.ack_envelope_id)
            return Ack(
                envelope_id=r.ack_envelope_id or "",
                connection_id=r.ack_connection_id or "",
                payload=r.ack_payload,
                latency_s=r.acked_at - attempt.sent_at,
                retry_attempt=attempt.retry_attempt,
                late=r.outcome == "timeout",
            )

        def describe() -> str:
            r = self.delivery(d)
            return (
                f"an ack for {d.kind} {d.key}: outcome={r.outcome} attempts={r.attempts} acks_lost={r.acks_lost}; "
                f"connections: {self._conns_summary()}"
            )

        return self._recorder.wait(check, timeout, describe)

    def wait_for_outcome(
        self, d: Delivery, outcomes: Iterable[str] = ("acked",), timeout: float = 10
    ) -> DeliveryRecord:
        wanted = tuple(outcomes)

        def check() -> DeliveryRecord | None:
            r = self.delivery(d)
            return r if r.outcome in wanted else None

        return self._recorder.wait(check, timeout, lambda: f"{d.key} outcome in {wanted}: now {self.delivery(d)}")

    def wait_for_connections(self, n: int, timeout: float = 10) -> list[ConnectionInfo]:
        def check() -> list[ConnectionInfo] | None:
            live = self.connections(live_only=True)
            return live if len(live) >= n else None

        return self._recorder.wait(
            check, timeout, lambda: f"{n} live connection(s); connections: {self._conns_summary()}; "
            f"methods called: {self._methods_seen()}"
        )  # fmt: skip

    def _conns_summary(self) -> str:
        return ", ".join(f"{c.id}:{c.state}:{c.close_how or ''}" for c in self.connections()) or "none"

    def _methods_seen(self) -> str:
        return ", ".join(f"{c.method}->{c.status}/{c.error or 'ok'}" for c in self.calls()[-8:]) or "none"

    # --- faults --------------------------------------------------------------------------------
    def _targets(self, conn: str | list[str] | None) -> list[WsConnection]:
        """Every open connection (None), one id, or a list of ids (e.g. one bot process's, see
        sandbox.testing.connections_of)."""
        conns = self._hub.open_connections()
        if conn is None:
            return conns
        wanted = [conn] if isinstance(conn, str) else list(conn)
        by_id = {c.info.id: c for c in self._hub.conns.values() if c.info is not None}
        missing = [w for w in wanted if w not in by_id]
        if missing:
            raise KeyError(f"no connection {', '.join(map(repr, missing))}; known: {self._conns_summary()}")
        return [by_id[w] for w in wanted]

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

    def bot_user_id(self) -> str:
        return BOT_USER_ID

    def now(self) -> float:
        return time.monotonic()
