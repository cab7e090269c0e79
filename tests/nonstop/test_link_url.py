from __future__ import annotations

import pytest

from nonstop.link import socket_url


@pytest.mark.parametrize(
    ("given", "dialled"),
    [
        (
            "wss://wss-primary.slack.com/link/?ticket=t&app_id=A1",
            "wss://wss-primary.slack.com/link/?ticket=t&app_id=A1",
        ),
        ("wss://wss-primary.slack.com:443/link/?ticket=t", "wss://wss-primary.slack.com:443/link/?ticket=t"),
        ("ws://127.0.0.1:8765/link/?ticket=t", "ws://127.0.0.1:8765/link/?ticket=t"),
        ("wss://127.0.0.1:8765/link/?ticket=t", "ws://127.0.0.1:8765/link/?ticket=t"),
        ("wss://localhost:3011/link/?ticket=t", "ws://localhost:3011/link/?ticket=t"),
        ("wss://[::1]:3011/link", "ws://[::1]:3011/link"),
        ("wss://example.com:8443/link", "wss://example.com:8443/link"),
    ],
)
def test_tls_except_for_a_loopback_emulator_on_a_non_tls_port(given: str, dialled: str) -> None:
    assert socket_url(given) == dialled
