"""Health and metrics over HTTP: `/healthz` (liveness), `/readyz` (readiness), `/metrics` (Prometheus).

A stdlib `ThreadingHTTPServer` on a daemon thread of its own. A request only takes a telemetry
snapshot (one short lock) and renders the metrics registry, so a slow or stuck scraper can never
hold up the Socket Mode event loop; each connection gets its own thread and a socket timeout.

    server = start_health_server("127.0.0.1", 8080)   # None when the port is 0
    ...
    server.close()

- `/healthz`: 200 while the supervisor loop beats (with every ping, every 2.25 s by default); 503 once
  it has been silent for `wedged_after_s`: the process is stuck and restarting it is right. 200
  "starting" before the loop runs (startup retries auth.test on its own schedule and says so in the
  log).
- `/readyz`: 200 when at least one connection is live and a frame came in within the supervisor's
  `stale_after_s`; 503 otherwise, with the supervisor's state as the reason (`connecting`,
  `backing_off (retry delay 4.2s)`, `fatal: token_revoked`, `stopping`, …).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nonstop.errors import ConfigError
from nonstop.status.metrics import CONTENT_TYPE
from nonstop.status.snapshot import Snapshot
from nonstop.status.telemetry import TELEMETRY, Telemetry

log = logging.getLogger("nonstop.status.health")

WEDGED_AFTER_S = 10.0
"""Liveness fails when the supervisor loop has not beaten for this long (it beats with every ping)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    body: dict[str, Any]

    @property
    def status(self) -> int:
        return 200 if self.ok else 503


def liveness(snap: Snapshot, wedged_after_s: float = WEDGED_AFTER_S) -> Verdict:
    if snap.last_beat_at is None:
        return Verdict(True, {"status": "starting", "state": snap.state_text, "uptime_s": round(snap.uptime_s, 1)})
    silent = snap.now - snap.last_beat_at
    if silent > wedged_after_s:
        reason = f"supervisor loop has not run for {silent:.1f}s (limit {wedged_after_s:g}s)"
        return Verdict(False, {"status": "wedged", "reason": reason, "state": snap.state_text})
    return Verdict(True, {"status": "alive", "state": snap.state_text, "uptime_s": round(snap.uptime_s, 1)})


def readiness(snap: Snapshot) -> Verdict:
    facts: dict[str, Any] = {
        "state": snap.state_text,
        "live_connections": snap.live_connections,
        "target_connections": snap.target_connections,
    }
    if snap.last_inbound_at is not None:
        facts["last_inbound_age_s"] = round(max(0.0, snap.now - snap.last_inbound_at), 2)
    if snap.last_drop is not None:
        facts["last_drop"] = {"cause": snap.last_drop.cause, "explanation": snap.last_drop.explanation}
    cluster = snap.cluster
    if cluster is not None:
        facts["cluster"] = {
            "replicas": len(cluster.replicas),
            "connections": cluster.total,
            "budget": cluster.budget,
            "allowed_here": cluster.allowed,
        }
        if not cluster.redis_reachable:
            facts["degraded"] = "redis unreachable"
    reason = snap.not_ready_reason
    if reason is not None:
        return Verdict(False, {"status": "not_ready", "reason": reason, **facts})
    if cluster is not None and cluster.standby:
        reason = (
            f"standby: Slack's {cluster.budget} connections are all taken by {len(cluster.replicas) - 1} other "
            "replica(s); this one connects when one leaves"
        )
        return Verdict(True, {"status": "standby", "reason": reason, **facts})
    return Verdict(True, {"status": "ready", **facts})


class _Handler(BaseHTTPRequestHandler):
    server: _HealthServer
    timeout = 5  # seconds a client may take to send its request: a stuck client costs one thread, briefly
    protocol_version = "HTTP/1.0"
    server_version = "nonstop-health"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        telemetry = self.server.telemetry
        try:
            if path == "/metrics":
                self._send(200, telemetry.metrics.render(), CONTENT_TYPE)
            elif path in ("/healthz", "/livez"):
                self._json(liveness(telemetry.snapshot(), self.server.wedged_after_s))
            elif path == "/readyz":
                self._json(readiness(telemetry.snapshot()))
            else:
                self._send(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def _json(self, verdict: Verdict) -> None:
        body = json.dumps(verdict.body, ensure_ascii=False).encode() + b"\n"
        self._send(verdict.status, body, "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib names it `format`
        log.debug("%s %s", self.address_string(), format % args)


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restart may rebind at once; a *listening* socket still blocks the port

    def __init__(self, address: tuple[str, int], telemetry: Telemetry, wedged_after_s: float) -> None:
        self.telemetry = telemetry
        self.wedged_after_s = wedged_after_s
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class HealthServer:
    """A running health server; `close()` stops it."""

    def __init__(self, server: _HealthServer) -> None:
        self._server = server
        # A short poll interval only makes close() quick; requests are served the moment they arrive.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="nonstop-health", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{f'[{host}]' if ':' in str(host) else host}:{self.port}"

    def close(self) -> None:
        with _SHARED_LOCK:
            for address in [a for a, server in _SHARED.items() if server is self]:
                del _SHARED[address]
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


_SHARED: dict[tuple[str, int], HealthServer] = {}
_SHARED_LOCK = threading.Lock()


def process_health_server(host: str, port: int, telemetry: Telemetry = TELEMETRY) -> HealthServer | None:
    """The process's health server on `host:port`, started by the first caller and shared by the rest (`python
    app.py` starts it before signing in, so probes see the start-up; the handler it then runs finds it running).
    None when `port` is 0. Raises `ConfigError` as `start_health_server` does."""
    with _SHARED_LOCK:
        running = _SHARED.get((host, port))
        if running is None:
            running = start_health_server(host, port, telemetry)
            if running is not None:
                _SHARED[(host, port)] = running
        return running


def start_health_server(
    host: str, port: int, telemetry: Telemetry = TELEMETRY, *, wedged_after_s: float = WEDGED_AFTER_S
) -> HealthServer | None:
    """Serve /healthz, /readyz and /metrics on `host:port` in the background; None when `port` is 0.

    Raises `ConfigError` (one line, exit 78) when the address cannot be bound, e.g. the port is taken.
    """
    if port == 0:
        log.info("health server off (HEALTH_PORT=0)")
        return None
    try:
        server = _HealthServer((host, port), telemetry, wedged_after_s)
    except OSError as e:
        raise ConfigError(_bind_error(host, port, e)) from None
    running = HealthServer(server)
    log.info("health server on %s (/healthz, /readyz, /metrics)", running.url)
    return running


def _bind_error(host: str, port: int, e: OSError) -> str:
    where = f"HEALTH_HOST={host} HEALTH_PORT={port}"
    if e.errno == errno.EADDRINUSE:
        return (
            f"{where}: port {port} is already in use (another nonstop, or another service): "
            "set HEALTH_PORT to a free port, or HEALTH_PORT=0 to turn the health server off."
        )
    if e.errno == errno.EACCES:
        return f"{where}: not allowed to listen on port {port}: use a port above 1023, or HEALTH_PORT=0."
    if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host!r} is not an address of this machine: use 127.0.0.1 or 0.0.0.0."
    return f"{where}: cannot listen there ({e.strerror or e}); set HEALTH_PORT=0 to turn the health server off."
