"""The supervisor's whole suite (tests/integration/test_supervisor.py) again, over https:// and wss://.

Every test there drives the real bot against the `sandbox` fixture; here that sandbox serves TLS (see
conftest.py) and `bot_env` trusts its CA through SSL_CERT_FILE. So resets, half-open links, refreshes,
outages, rate limits, revoked tokens, wedged handshakes, drains and the rest are checked with TLS in the
path, where a TLS layer could hide a close, an EOF or a dead peer.
"""

from __future__ import annotations

from sandbox import Sandbox
from sandbox.testing import ws_url
from tests.botprocess import bot_env
from tests.integration import test_supervisor as _suite

for _name, _test in vars(_suite).items():
    if _name.startswith("test_") and callable(_test):
        globals()[_name] = _test


def test_this_module_really_runs_them_over_tls(sandbox: Sandbox) -> None:
    env = bot_env(sandbox)
    assert sandbox.api_url.startswith("https://")
    assert env["SSL_CERT_FILE"] == sandbox.tls.ca_file  # type: ignore[union-attr]
    assert ws_url(sandbox).startswith("wss://")
