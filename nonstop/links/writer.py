"""`FrameWriter`: how a link writes to Slack — a loop turn's acks in one system call, pings, and the
library's own `send` when the peer is not keeping up.

Why not `send()` per frame: each write is a system call, each system call hands the GIL to whichever
listener thread is runnable, and a burst of acks then waits once per frame; the library's framing makes one
more system call per frame for its masking key (`nonstop.links.frames`). So frames made here are written
straight to the asyncio transport, after whatever the connection's Sans-I/O protocol has pending (a pong),
honouring its end-of-stream marker. The link never sends fragmented messages, so no frame can land inside
one. Flow control: above `BACKED_UP` bytes waiting in the transport nothing is written directly and the
library's `send()`, which waits for the peer, takes over. websockets is pinned and this use is pinned by
tests/nonstop/links/test_websockets_contract.py. Measurements: docs/decisions.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from nonstop.aio import PerTurn, TaskSet
from nonstop.links.frames import MaskKeys, ping_frame, pong_frame, text_frame

__all__ = ["BACKED_UP", "FrameWriter"]

BACKED_UP = 64 * 1024
"""Bytes waiting in the transport above which the peer is not reading: stop writing directly past it."""

Queued = tuple[str, Callable[[], None]]  # a text frame, and what to do if it cannot be written


class FrameWriter:
    """Writes one link's frames. `attach()` the connection once it is open; until then nothing is written."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._ws: ClientConnection | None = None
        self._keys = MaskKeys()
        self._outbox: PerTurn[Queued] = PerTurn(self._write_turn)
        self._tasks = TaskSet()

    def attach(self, ws: ClientConnection) -> None:
        self._ws = ws

    def queue(self, text: str, on_failure: Callable[[], None]) -> None:
        """Queue one text frame; the frames queued in one loop turn leave together, in order, in one write.
        `on_failure` runs if it could not be written (the peer is not reading: a dead path, most likely)."""
        self._outbox.add((text, on_failure))

    def flush(self) -> None:
        """Write what was queued now, instead of at the end of the loop turn."""
        self._outbox.flush_now()

    def ping(self) -> bytes | None:
        """Write one ping with a random payload; return the pong that answers it, as it will appear on the
        wire. None, writing nothing, when earlier writes have not left yet (a dead path, most likely) or the
        connection is closing: a ping must never wait."""
        ws = self._ws
        if (
            ws is None
            or ws.state is not State.OPEN
            or ws.transport.is_closing()
            or ws.transport.get_write_buffer_size()
        ):
            return None
        payload = self._keys.next()  # random, so the pong cannot be mistaken for an older ping's
        self._write(ws, ping_frame(payload, self._keys.next()))
        return pong_frame(payload)

    async def send(self, text: str, timeout_s: float = 1.0) -> bool:
        """Send one text frame with the library's `send()`, which waits for the peer; False if the connection
        is gone or could not take it in time."""
        if self._ws is None:
            return False
        try:
            await asyncio.wait_for(self._ws.send(text), timeout_s)
        except (ConnectionClosed, TimeoutError, RuntimeError):
            return False
        return True

    def cancel(self) -> None:
        """The link ended: slow writes still under way report their frames as failed."""
        self._tasks.cancel()

    def _write_turn(self, batch: list[Queued]) -> None:
        ws = self._writable()
        if ws is not None:
            self._write(ws, b"".join(text_frame(text, self._keys.next()) for text, _ in batch))
            return
        # Backed up (or closing): the library's own send, which waits for the peer to read, with a deadline.
        self._tasks.spawn(self._write_slowly(batch), name=f"{self._name}-send")

    def _writable(self) -> ClientConnection | None:
        ws = self._ws
        if ws is None or ws.protocol.state is not State.OPEN or ws.transport.is_closing():
            return None
        if ws.transport.get_write_buffer_size() > BACKED_UP:
            return None
        return ws

    @staticmethod
    def _write(ws: ClientConnection, frames: bytes) -> None:
        chunks = ws.protocol.data_to_send()  # whatever the protocol still has to send (a pong) goes first
        data = b"".join(chunks) + frames if chunks else frames
        if data:
            ws.transport.write(data)
        if b"" in chunks and ws.transport.can_write_eof():  # the protocol asked to end the stream
            ws.transport.write_eof()

    async def _write_slowly(self, batch: list[Queued]) -> None:
        sent = 0
        try:
            for text, _ in batch:
                if not await self.send(text):
                    break
                sent += 1
        finally:  # also when the link ends (and cancels this task) half-way through
            for _, on_failure in batch[sent:]:
                on_failure()
