"""`nonstop.links.link` uses the public API of `websockets`, at exactly the pinned version.

An upgrade must be a deliberate change: this fails loudly when the installed version differs from
the pin in requirements.txt, and names each piece of the library the link relies on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, CloseCode

from nonstop.links.frames import MaskKeys, ping_frame, pong_frame
from nonstop.links.writer import FrameWriter
from sandbox.testing import ws_url

REQUIREMENTS = Path(__file__).resolve().parents[3] / "requirements.txt"


def test_installed_websockets_is_the_pinned_one() -> None:
    pin = re.search(r"^websockets==(\S+)$", REQUIREMENTS.read_text(), re.MULTILINE)
    assert pin is not None, "websockets must be pinned exactly in requirements.txt"
    assert websockets.__version__ == pin.group(1), (
        f"websockets {websockets.__version__} is installed but {pin.group(1)} is pinned: re-run the link's tests "
        "and bench/ before changing the pin"
    )


def test_the_api_the_link_relies_on_is_there() -> None:
    params = inspect.signature(connect).parameters
    for name in (
        "ping_interval",
        "ping_timeout",
        "close_timeout",
        "compression",
        "max_size",
        "open_timeout",
        "create_connection",
    ):
        assert name in params, name
    for method in ("recv", "send", "close", "data_received"):
        assert callable(getattr(ClientConnection, method)), method
    assert {"sent", "rcvd"} <= set(inspect.signature(ConnectionClosed).parameters)
    assert CloseCode.MESSAGE_TOO_BIG == 1009
    assert Close(1009, "").code == 1009


def test_a_live_connection_exposes_the_transport_the_link_aborts(sandbox) -> None:
    """websockets has no public abort; the link drops a dead path with the asyncio transport's own
    `abort()` (no close handshake that could hang). Pinned here so an upgrade that moves it fails."""

    async def drain(ws: ClientConnection) -> None:
        async with asyncio.timeout(5):
            while True:
                await ws.recv()

    async def probe() -> None:
        async with connect(ws_url(sandbox), ping_interval=None, proxy=None) as ws:
            assert callable(ws.transport.abort)
            ws.transport.abort()
            with pytest.raises(ConnectionClosed):  # after what was already buffered (hello), the end
                await drain(ws)

    asyncio.run(probe())


@pytest.mark.parametrize("backed_up", [False, True], ids=["written-directly", "through-send"])
def test_acks_the_writer_frames_are_acks_slack_takes(sandbox, monkeypatch: pytest.MonkeyPatch, backed_up: bool) -> None:
    """`FrameWriter` writes a turn's acks straight to the transport (after what the Sans-I/O protocol has
    pending: `data_to_send()`), or, when `transport.get_write_buffer_size()` says the peer is behind, through
    the library's `send()`. Both paths are driven here against a live server that matches the acks to the
    envelopes it sent, so an upgrade that changes any of it fails."""
    if backed_up:
        monkeypatch.setattr("nonstop.links.writer.BACKED_UP", -1)  # every write counts as backed up

    async def probe() -> None:
        async with connect(ws_url(sandbox), ping_interval=None, proxy=None) as ws:
            await asyncio.wait_for(ws.recv(), 5)  # hello
            deliveries = await asyncio.to_thread(sandbox.mentions, ["one", "two", "three"])
            ids = [json.loads(await asyncio.wait_for(ws.recv(), 5))["envelope_id"] for _ in deliveries]
            writer, failed = FrameWriter("probe"), []
            writer.attach(ws)
            for envelope_id in ids:
                writer.queue(json.dumps({"envelope_id": envelope_id}), lambda e=envelope_id: failed.append(e))
            writer.flush()
            for delivery in deliveries:
                await asyncio.to_thread(sandbox.wait_for_ack, delivery, 5)
            assert failed == []
            ws.transport.abort()

    asyncio.run(probe())


def test_every_byte_reaches_the_connections_data_received_and_a_written_ping_is_answered(sandbox) -> None:
    """`Link` passes a `ClientConnection` subclass as `create_connection` and learns from its
    `data_received` that Slack is talking; it writes its pings itself (`nonstop.links.frames.ping_frame`) and
    recognises the pong by its bytes. Pinned here so an upgrade that stops feeding bytes through
    `data_received`, or answers differently, fails."""

    class Recording(ClientConnection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.seen = bytearray()
            self.arrived = asyncio.Event()

        def data_received(self, data: bytes) -> None:
            self.seen += data
            self.arrived.set()
            super().data_received(data)

    async def probe() -> None:
        async with connect(ws_url(sandbox), ping_interval=None, proxy=None, create_connection=Recording) as ws:
            assert isinstance(ws, Recording)
            hello = await asyncio.wait_for(ws.recv(), 5)
            assert str(hello).encode() in ws.seen  # the frames recv() returns came through data_received
            keys = MaskKeys()
            payload = keys.next()
            ws.transport.write(ping_frame(payload, keys.next()))
            async with asyncio.timeout(5):
                while pong_frame(payload) not in ws.seen:
                    ws.arrived.clear()
                    await ws.arrived.wait()
            ws.transport.abort()  # the sandbox takes its time over a closing handshake; not what is tested

    asyncio.run(probe())
