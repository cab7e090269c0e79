"""A prototype for issue 20, item 5: links, acks and ledger in one process, the Bolt listeners in another.

    SLACK_BOT_TOKEN=xoxb-… SLACK_APP_TOKEN=xapp-… SLACK_API_URL=… python -m bench.split_prototype
    python -m bench.split_prototype --help

The I/O process (the one started) holds the Socket Mode links (`nonstop.link.Link`), admits each loop
turn's Events API envelopes to the ledger in one write (`nonstop.ledger`: `NONSTOP_LEDGER`, SQLite in the
working directory by default, as for `app.py`), acks them with the library's own `send()`, one message
each, and then hands the new ones to the listener process. Slash commands and interactions go to the
listener process first and are acked with the payload Bolt's listener gave, as Bolt's own handler builds
it. The listener process (`--role listeners`, started and restarted by the I/O process) runs the real
Bolt `App` of `app.py` with the repository's listeners, in lanes (`nonstop.lanes`), and reports each
event finished once every listener it started has returned. The two talk over a Unix socket pair
(`pack` / `Unpacker`).

Gone, compared with `app.py`: the hand-made frames (`nonstop.frames` for the acks; the link's own pings
still use them), the acks-first delay, thread niceness and the GIL switch interval. Whether the numbers
hold without them is what `bench/split_eval.py` measures (docs/decisions.md).

Left out, since this is a prototype and not a runtime: spare links, suspects replaced make-before-break
(a suspect link is only replaced once it is dead; a refresh is make-before-break), the connect gate and
the retry policy (a failed connect waits 1 s), replicas and Redis, the backlog bound, drain on SIGTERM
(it stops at once; what is on record runs at the next start), duplicate commands, health and metrics,
and telemetry across the two processes (the listeners' `status` sees none of the links).

Crash semantics. The listener process dies: the I/O process starts a new one and hands it every event it
acked and has not heard finished (a listener cut off half-way runs again: at least once); commands it was
running get no ack (Slack shows the user a timeout). The I/O process dies: the listener process reads the
end of its socket and exits at once; the next start finds the acked, unfinished events in the ledger and
runs them (with `memory://` they are lost, as with `app.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk import WebClient
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from listeners import register_listeners  # noqa: E402
from listeners.replies import sorry_reply  # noqa: E402
from nonstop.backends import open_local_ledger  # noqa: E402
from nonstop.bolt.lanes import COMMANDS, EVENTS, LaneExecutor, Tracker, working_on  # noqa: E402
from nonstop.config.settings import Settings, load_settings  # noqa: E402
from nonstop.errors import ConfigError  # noqa: E402
from nonstop.ledger import Entry, Ledger, LedgerError  # noqa: E402
from nonstop.links.ends import LinkEnd, LinkFailed  # noqa: E402
from nonstop.links.link import Link  # noqa: E402
from nonstop.links.tickets import TicketRefused, open_ticket  # noqa: E402
from nonstop.pipeline.envelopes import event_key, parse_request  # noqa: E402
from nonstop.startup import build_app  # noqa: E402

__all__ = ["ACK", "COMMAND", "EVENT", "FINISHED", "PlainAckLink", "Unpacker", "main", "pack", "send_plainly"]

log = logging.getLogger("split")

# --- between the two processes -------------------------------------------------------------------------

EVENT = b"E"  # I/O → listeners: (event key, envelope as received): run it; it is acked and on record
COMMAND = b"C"  # I/O → listeners: (envelope_id, envelope as received): run it, send its ack payload back
FINISHED = b"F"  # listeners → I/O: (event key, ""): Bolt's dispatch and every listener it started returned
ACK = b"A"  # listeners → I/O: (envelope_id, the ack's payload as JSON, or "" for none)
_HEAD = struct.Struct("!cII")  # kind, then the byte length of each of the two fields


def pack(kind: bytes, first: str, second: str = "") -> bytes:
    """One message: its kind and two text fields, each prefixed with its length (any text goes, newlines too)."""
    a, b = first.encode(), second.encode()
    return _HEAD.pack(kind, len(a), len(b)) + a + b


class Unpacker:
    """Messages out of a byte stream, however the stream is cut into reads."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, str, str]]:
        """Take `data`; return every message it completes, in order (kind, first, second)."""
        self._buffer += data
        messages: list[tuple[bytes, str, str]] = []
        at = 0
        while len(self._buffer) - at >= _HEAD.size:
            kind, first_len, second_len = _HEAD.unpack_from(self._buffer, at)
            start = at + _HEAD.size
            end = start + first_len + second_len
            if len(self._buffer) < end:
                break
            first = self._buffer[start : start + first_len].decode()
            messages.append((kind, first, self._buffer[start + first_len : end].decode()))
            at = end
        del self._buffer[:at]
        return messages


# --- the I/O process ---------------------------------------------------------------------------------------

CONNECT_TIMEOUT_S = 10.0
RETRY_S = 1.0  # after a failed connect, and before restarting a listener process that died young


async def send_plainly(ws: ClientConnection, texts: list[str], timeout_s: float = 1.0) -> int:
    """Send each of `texts` as one message with the library's own `send()`; return how many went.

    `send()` writes at once and returns without waiting unless the peer stopped reading (the transport
    above its high-water mark); one deadline for the whole batch bounds that wait."""
    sent = 0
    with contextlib.suppress(ConnectionClosed, TimeoutError, RuntimeError):
        async with asyncio.timeout(timeout_s):
            for text in texts:
                await ws.send(text)
                sent += 1
    return sent


class PlainAckLink(Link):
    """`nonstop.link.Link` (handshake, hello, watchdog, reading) whose acks leave through the library's `send()`."""

    async def send_all(self, texts: list[str]) -> int:
        """Send `texts` in order, one message each; return how many went (the rest: the link is gone or stuck)."""
        if self._ws is None or not self.is_open:
            return 0
        return await send_plainly(self._ws, texts)


class IOSide:
    """Links, ledger and acks; the listener process is its child."""

    def __init__(self, settings: Settings, ledger: Ledger, listener_command: list[str]) -> None:
        self._settings = settings
        self._sup = settings.supervisor
        self._ledger = ledger
        self._listener_command = listener_command
        self._tickets = WebClient(base_url=settings.api_url, timeout=int(CONNECT_TIMEOUT_S), retry_handlers=[])
        self._links: set[PlainAckLink] = set()
        self._arrivals: list[tuple[PlainAckLink, dict[str, Any], str]] = []
        self._finished: list[str] = []
        self._in_flight: dict[str, str] = {}  # event key → envelope text: acked, handed over, not finished
        self._commands: dict[str, PlainAckLink] = {}  # envelope_id → the link it came on, until its ack
        self._child: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._names = 0
        self.listener_starts = 0

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            recovered = await self._ledger.open()
        except LedgerError as e:
            log.critical("cannot use the event ledger %s: %s", self._ledger.url, e)
            return 78
        if recovered.unfinished:
            log.warning("running %d event(s) again that were acked and never finished", len(recovered.unfinished))
        for entry in recovered.unfinished:
            self._in_flight[entry.key] = entry.envelope_json()
        listeners = asyncio.create_task(self._keep_listeners(), name="listener-process")
        slots = [asyncio.create_task(self._slot(i), name=f"slot-{i + 1}") for i in range(self._sup.connections)]
        pulse = loop.call_later(self._sup.ping_interval_s, self._pulse)
        await self._stop.wait()
        log.info("stopping: closing the links and the listener process (no drain in this prototype)")
        pulse.cancel()
        for task in [*slots, listeners]:
            task.cancel()
        await asyncio.gather(*slots, listeners, return_exceptions=True)
        await asyncio.gather(*(link.close(LinkEnd("shutdown", "stopping")) for link in list(self._links)))
        self._end_child()
        with contextlib.suppress(LedgerError):
            await self._ledger.close()
        return 0

    # -- links ----------------------------------------------------------------------------------------

    async def _slot(self, index: int) -> None:
        name = f"connection #{index + 1}"
        link = await self._connect(name)
        while True:
            refresh = asyncio.create_task(link.refresh_requested.wait())
            try:
                await asyncio.wait({link.ended, refresh}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                refresh.cancel()
            old = link
            if old.ended.done():
                self._links.discard(old)
                log.info("%s dropped: %s", name, old.ended.result().explanation)
            link = await self._connect(name)  # on a refresh, before the old one goes (make before break)
            if not old.ended.done():
                await old.close(LinkEnd("refresh", "replaced after Slack asked for a refresh"))
            self._links.discard(old)

    async def _connect(self, name: str) -> PlainAckLink:
        loop = asyncio.get_running_loop()
        while True:
            try:
                url = await loop.run_in_executor(None, open_ticket, self._tickets, self._settings.app_token)
                self._names += 1
                link = PlainAckLink(
                    f"{name}.{self._names}",
                    url,
                    on_envelope=self._on_envelope,  # type: ignore[arg-type]
                    ping_interval_s=self._sup.ping_interval_s,
                    stale_after_s=self._sup.stale_after_s,
                    pong_timeout_s=self._sup.pong_timeout_s,
                    max_frame_bytes=self._sup.max_frame_bytes,
                )
                await link.open(CONNECT_TIMEOUT_S)
            except (TicketRefused, LinkFailed) as e:
                log.warning("%s: could not connect (%s); retrying in %.0f s", name, e, RETRY_S)
                await asyncio.sleep(RETRY_S)
                continue
            self._links.add(link)
            log.info("%s: connected (Slack counts %s)", name, link.hello.get("num_connections"))
            return link

    def _pulse(self) -> None:
        """Every ping interval: drop links silent for too long (their slots replace them), ping the others."""
        now = time.monotonic()
        for link in list(self._links):
            if link.pulse(now) is not None:
                link.ping()
        asyncio.get_running_loop().call_later(self._sup.ping_interval_s, self._pulse)

    # -- envelopes ------------------------------------------------------------------------------------

    def _on_envelope(self, link: PlainAckLink, message: dict[str, Any], text: str) -> None:
        envelope_id = message.get("envelope_id")
        if not isinstance(envelope_id, str) or not envelope_id:
            return
        kind = message.get("type")
        if kind == "events_api":
            if not self._arrivals:  # the first of this loop turn: admit and ack them all at its end
                self._background(self._admit_turn())
            self._arrivals.append((link, message, text))
        elif kind in ("slash_commands", "interactive"):
            self._commands[envelope_id] = link
            self._to_listeners(pack(COMMAND, envelope_id, text))
        else:
            self._background(self._ack(link, [json.dumps({"envelope_id": envelope_id})]))

    async def _admit_turn(self) -> None:
        batch, self._arrivals = self._arrivals, []
        keyed = [(link, message, text, parse_request(message)) for link, message, text in batch]
        entries = [Entry(event_key(request) if request else f"envelope:{m['envelope_id']}", m, text=t) for
                   _, m, t, request in keyed]  # fmt: skip
        try:
            fresh = self._ledger.admit_now(entries)
            if fresh is None:
                fresh = await self._ledger.admit(entries)
        except LedgerError as e:  # not on record, so not acked: Slack retries them
            log.error("could not record %d event(s), left unacked: %s", len(entries), e)
            return
        by_link: dict[PlainAckLink, list[str]] = {}
        for link, message, _, _ in keyed:
            by_link.setdefault(link, []).append(json.dumps({"envelope_id": message["envelope_id"]}))
        for link, texts in by_link.items():
            await self._ack(link, texts)
        handed: list[bytes] = []
        for (_, _, text, request), entry, new in zip(keyed, entries, fresh, strict=True):
            if new and request is not None:
                self._in_flight[entry.key] = text
                handed.append(pack(EVENT, entry.key, text))
            elif new:  # acked, on record, and nothing Bolt could run: done
                self._finish(entry.key)
        if handed:
            self._to_listeners(b"".join(handed))

    async def _ack(self, link: PlainAckLink, texts: list[str]) -> None:
        """Acks on the link the envelopes came on; Slack takes them on any of the app's links, so the rest
        go on another one if that link is gone."""
        rest = texts[await link.send_all(texts) :]
        for other in list(self._links):
            if not rest:
                return
            if other is not link:
                rest = rest[await other.send_all(rest) :]
        if rest:
            log.warning("could not ack %d envelope(s): no open link; Slack will redeliver them", len(rest))

    def _finish(self, key: str) -> None:
        self._in_flight.pop(key, None)
        if not self._finished:
            self._background(self._record_finished())
        self._finished.append(key)

    async def _record_finished(self) -> None:
        keys, self._finished = self._finished, []
        try:
            await self._ledger.finish(keys)
        except LedgerError as e:
            log.error("could not mark %d event(s) done; they run again at the next start: %s", len(keys), e)

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    # -- the listener process ----------------------------------------------------------------------------

    def _to_listeners(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)
        # else: a new listener process is on its way; it gets every event in flight, commands are dropped

    async def _keep_listeners(self) -> None:
        """Start the listener process; whenever it ends, start another, which gets every event in flight."""
        while True:
            started = time.monotonic()
            try:
                await self._run_listeners()
            except Exception:  # this task must not die: the events in flight would wait forever
                log.exception("running the listener process failed; starting another")
            if time.monotonic() - started < RETRY_S:
                await asyncio.sleep(RETRY_S)

    async def _run_listeners(self) -> None:
        ours, theirs = socket.socketpair()
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self._child = subprocess.Popen(
            [*self._listener_command, "--fd", str(theirs.fileno())], pass_fds=(theirs.fileno(),), env=env
        )
        theirs.close()
        self.listener_starts += 1
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        for key, text in list(self._in_flight.items()):
            self._writer.write(pack(EVENT, key, text))
        unpacker = Unpacker()
        with contextlib.suppress(ConnectionError):  # a reset: it died with events unread in its socket
            while data := await reader.read(1 << 16):
                for kind, first, second in unpacker.feed(data):
                    self._from_listeners(kind, first, second)
        self._writer.close()
        self._writer = None
        code = await asyncio.get_running_loop().run_in_executor(None, self._child.wait)
        lost = len(self._commands)
        self._commands.clear()
        log.error(
            "the listener process ended (exit %s); starting another, handing it %d event(s) in flight "
            "(%d command(s) it was running get no ack)",
            code,
            len(self._in_flight),
            lost,
        )

    def _from_listeners(self, kind: bytes, first: str, second: str) -> None:
        if kind == FINISHED:
            self._finish(first)
        elif kind == ACK:
            link = self._commands.pop(first, None)
            if link is not None:
                body: dict[str, Any] = {"envelope_id": first}
                if second:
                    body["payload"] = json.loads(second)
                self._background(self._ack(link, [json.dumps(body)]))
        else:
            log.warning("ignored a message of unknown kind %r from the listener process", kind)

    def _end_child(self) -> None:
        child = self._child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(2)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# --- the listener process ----------------------------------------------------------------------------------

DISPATCH_THREADS = 4  # per lane, as nonstop.dispatch: Bolt's own dispatch (middleware, matching)
LANES = (EVENTS, COMMANDS)


class ListenerSide:
    """Runs Bolt for what the I/O process hands over, on lanes like `app.py`'s (events 32 threads, commands 8)."""

    def __init__(self, app: Any, sock: socket.socket, settings: Settings, failure_reply: Callable[[str], str]) -> None:
        self._app = app
        self._sock = sock
        self._failure_reply = failure_reply
        self._send_lock = threading.Lock()
        self._dispatch = {lane: ThreadPoolExecutor(DISPATCH_THREADS, f"split-dispatch-{lane}") for lane in LANES}
        self.lanes = LaneExecutor(
            {
                EVENTS: ThreadPoolExecutor(settings.supervisor.handler_threads, "split-listener"),
                COMMANDS: ThreadPoolExecutor(settings.supervisor.command_threads, "split-command"),
            }
        )
        app.listener_runner.listener_executor = self.lanes  # Bolt runs every listener on the lanes

    def serve(self) -> None:
        """Until the I/O process goes away (the end of the socket)."""
        unpacker = Unpacker()
        while data := self._sock.recv(1 << 16):
            for kind, first, second in unpacker.feed(data):
                if kind == EVENT:
                    self._dispatch[EVENTS].submit(self._run_event, first, second)
                elif kind == COMMAND:
                    self._dispatch[COMMANDS].submit(self._run_command, first, second)
                else:
                    log.warning("ignored a message of unknown kind %r from the I/O process", kind)

    def _send(self, data: bytes) -> None:
        with self._send_lock, contextlib.suppress(OSError):  # the I/O process is gone: this one ends soon
            self._sock.sendall(data)

    def _run_event(self, key: str, text: str) -> None:
        tracker = Tracker(lambda: self._send(pack(FINISHED, key)))
        try:
            request = parse_request(json.loads(text))
            if request is not None:
                with working_on(EVENTS, tracker):
                    self._bolt(request)
        finally:
            tracker.release()

    def _run_command(self, envelope_id: str, text: str) -> None:
        request = parse_request(json.loads(text))
        payload: dict[str, Any] | None = None
        if request is not None:
            with working_on(COMMANDS):
                payload = self._bolt(request)
        self._send(pack(ACK, envelope_id, "" if payload is None else json.dumps(payload)))

    def _bolt(self, request: Any) -> dict[str, Any] | None:
        """Bolt's dispatch for `request`; the ack payload as Bolt's own `send_response` builds it."""
        responses: list[Any] = []
        try:
            bolt_response = run_bolt_app(self._app, request)
            send_response(SimpleNamespace(logger=log, send_socket_mode_response=responses.append), request,
                          bolt_response, time.time())  # type: ignore[arg-type]  # fmt: skip
        except Exception:
            log.exception("handling envelope %s (%s) failed", request.envelope_id, request.type)
            if request.type == "slash_commands":
                return {"text": self._failure_reply(request.envelope_id)}
            return None
        return responses[0].payload if responses else None


def _listeners_main(fd: int, settings: Settings) -> int:
    nice = int(os.environ.get("SPLIT_LISTENER_NICE") or 0)  # a variant for bench/split_eval.py (split-nice)
    if nice > 0:
        os.nice(nice)  # the whole process: no thread of the I/O process is touched
    sock = socket.socket(fileno=fd)
    app = build_app(settings)
    register_listeners(app)
    ListenerSide(app, sock, settings, lambda ref: sorry_reply(ref).text).serve()
    logging.shutdown()
    os._exit(0)  # the I/O process is gone: listeners still running are cut off (they run again from the ledger)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.split_prototype",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--role", choices=("io", "listeners"), default="io", help="io (default) starts listeners")
    parser.add_argument("--fd", type=int, help="listeners only: the socket to the I/O process (inherited)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s {args.role} %(name)s %(message)s",
    )
    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"split prototype: configuration error: {e}", file=sys.stderr)
        return 78
    if args.role == "listeners":
        if args.fd is None:
            parser.error("--role listeners needs --fd")
        return _listeners_main(args.fd, settings)
    sup = settings.supervisor
    ledger = open_local_ledger(sup.ledger_url, sup.dedup_ttl_s)
    command = [sys.executable, "-m", "bench.split_prototype", "--role", "listeners"]
    return asyncio.run(IOSide(settings, ledger, command).run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
