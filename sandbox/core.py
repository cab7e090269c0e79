"""`SandboxBase`: a local Slack's state and lifecycle on a background event-loop thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Any, Self, TypeVar

from sandbox.config import SandboxConfig
from sandbox.control import make_control_handler
from sandbox.delivery import Router
from sandbox.faults import Faults
from sandbox.history import History
from sandbox.ports import HOLDS, hold_port
from sandbox.recorder import Recorder
from sandbox.records import ApiCall, ConnectionInfo
from sandbox.socket import SocketHub, WsConnection
from sandbox.tls import SandboxTLS
from sandbox.webapi import WebApi

__all__ = ["SandboxBase"]

T = TypeVar("T")
BACKLOG = 1024


class SandboxBase:
    """The sandbox's state, its lifecycle (start, stop, a context manager) and the one way onto its loop
    thread (`_call`). `sandbox.server.Sandbox` adds what users do, the switches and the inspection."""

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
            history=History(),
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
        self._incident_timer: asyncio.TimerHandle | None = None

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

    def start(self) -> Self:
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

    def __enter__(self) -> Self:
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

    # --- what every part reads ------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Every Web API call so far (or those of one method), oldest first, as snapshots."""
        with self._recorder.lock:
            return [c.snapshot() for c in self._recorder.calls if method is None or c.method == method]

    def connections(self, live_only: bool = False) -> list[ConnectionInfo]:
        with self._recorder.lock:
            conns = list(self._recorder.connections.values())
            return [c.snapshot() for c in conns if not live_only or c.live]

    def _conns_summary(self) -> str:
        return ", ".join(f"{c.id}:{c.state}:{c.close_how or ''}" for c in self.connections()) or "none"

    def _methods_seen(self) -> str:
        return ", ".join(f"{c.method}->{c.status}/{c.error or 'ok'}" for c in self.calls()[-8:]) or "none"

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
