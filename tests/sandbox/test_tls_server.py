"""The sandbox's TLS server says nothing after the handshake until it is asked (no session tickets), so
clients that read and write one TLS connection from two threads do not race OpenSSL on their first request
(see `SandboxTLS.server_context`)."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from sandbox import Sandbox
from sandbox.testing import TEST_CONFIG
from sandbox.tls import SandboxTLS


@pytest.fixture
def tls_sandbox(no_proxy_env: None) -> Iterator[Sandbox]:
    tls = SandboxTLS()
    try:
        with Sandbox(TEST_CONFIG, tls=tls) as sb:
            yield sb
    finally:
        tls.cleanup()


@pytest.mark.parametrize("port", ["api_port", "ws_port"])
def test_nothing_arrives_after_the_handshake_until_the_client_speaks(tls_sandbox: Sandbox, port: str):
    assert tls_sandbox.tls is not None
    context = tls_sandbox.tls.client_context()
    raw = socket.create_connection(("127.0.0.1", getattr(tls_sandbox, port)), timeout=5)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() == "TLSv1.3"  # where tickets come after the handshake
        readable, _, _ = select.select([tls], [], [], 1.0)  # a ticket is sent at once; wait a second for one
        assert readable == [], "the server sent a record (a session ticket) before the client said anything"
