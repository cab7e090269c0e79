"""Held ports (`sandbox.ports`): refused like a free port, taken by nobody else, bindable by the server that
was meant to have them, again and again; the sandbox holds its Web API port through a refused outage."""

from __future__ import annotations

import asyncio
import socket
import urllib.error

import pytest

from sandbox import Sandbox
from sandbox.ports import HOLDS, free_port, hold_port
from tests.sandbox.test_webapi import api_up, post

pytestmark = pytest.mark.skipif(not HOLDS, reason="ports are held on Linux only (its SO_REUSEADDR rule)")


def taken_by_someone_else(port: int) -> bool:
    """Whether a listener that is not meant to have `port` (no SO_REUSEADDR: `bind` as most code does) is
    refused it. bind(port 0) and outgoing connections are refused it the same way (the kernel's conflict
    rule), which cannot be provoked on demand."""
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def serve_once(port: int) -> None:
    """A server as asyncio starts one (SO_REUSEADDR): bind the held port, answer one connection, stop."""

    async def main() -> None:
        async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hi")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", port)
        async with server:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                assert await asyncio.to_thread(client.recv, 2) == b"hi"

    asyncio.run(main())


def test_a_free_port_is_refused_kept_from_others_and_served_by_its_server_again_and_again():
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert taken_by_someone_else(port)
    for _ in range(2):  # a server that stops and starts again finds its port
        serve_once(port)
        assert taken_by_someone_else(port)


def test_the_usual_probe_would_have_left_the_port_to_anyone():
    """What the hold prevents: once the probe is closed, another listener gets the port."""
    hold = hold_port()
    port = hold.getsockname()[1]
    hold.close()
    assert not taken_by_someone_else(port)


def test_a_refused_outage_keeps_the_api_port_from_others_until_it_comes_back(sandbox: Sandbox):
    port = sandbox.api_port
    sandbox.outage(30, mode="refused")
    with pytest.raises(urllib.error.URLError) as refused:
        post(sandbox, "auth.test", token=sandbox.bot_token)
    assert isinstance(refused.value.reason, ConnectionRefusedError)
    assert taken_by_someone_else(port)
    sandbox.end_outage()
    sandbox.wait_until(lambda: api_up(sandbox), what="API back")
    assert sandbox.api_port == port
    sandbox.outage(30, mode="refused")  # once more: the first outage's hold let go, a second one holds
    assert taken_by_someone_else(port)
    sandbox.end_outage()
    sandbox.wait_until(lambda: api_up(sandbox), what="API back again")
    assert sandbox.api_port == port
