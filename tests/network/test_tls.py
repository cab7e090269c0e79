"""The real bot over https:// and wss:// (the sandbox with a throwaway CA), and what it says when a
certificate does not verify: one line naming the cause and the remedy, exit 78, no traceback."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Sandbox
from sandbox.testing import TEST_CONFIG, clean_env, ws_url
from sandbox.tls import SandboxTLS
from tests.botprocess import REPO, bot_env, run_bot, run_once


def untrusting_env(sb: Sandbox, **overrides: str) -> dict[str, str]:
    """The bot's environment without the sandbox's CA: only the system's CAs are trusted."""
    env = bot_env(sb, **overrides)
    env.pop("SSL_CERT_FILE", None)
    return env


def fatal_lines(output: str) -> list[str]:
    """The lines that tell a human what to do (the one the bot prints or logs when it gives up)."""
    return [line for line in output.splitlines() if "Retrying cannot fix this" in line]


def assert_one_clear_line(output: str, *must_say: str) -> str:
    assert "Traceback" not in output, output
    lines = fatal_lines(output)
    assert len(lines) == 1, output
    for words in must_say:
        assert words in lines[0], lines[0]
    return lines[0]


def test_the_bot_answers_over_tls(sandbox: Sandbox) -> None:
    assert sandbox.api_url.startswith("https://")
    with run_bot(bot_env(sandbox)) as bot:
        bot.wait_for_log(r"connection #2: connected")
        d = sandbox.mention("hello over TLS")
        sandbox.wait_for_message(thread_ts=d.ts)
        ack = sandbox.wait_for_ack(sandbox.slash_command("status"))
        assert ack.payload is not None, ack
        assert ack.payload.get("text"), ack
        tickets = sandbox.calls("apps.connections.open")
        assert tickets
        assert all(c.ok for c in tickets)
        assert "TLS trusts the system's CAs + SSL_CERT_FILE=" in bot.log


def test_without_the_ca_the_bot_stops_at_once_and_says_what_to_do(sandbox: Sandbox) -> None:
    started = time.monotonic()
    result = run_once(untrusting_env(sandbox), timeout=30)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 78, output
    line = assert_one_clear_line(output, "certificate", "SSL_CERT_FILE", "restart", f"127.0.0.1:{sandbox.api_port}")
    assert line.startswith("nonstop: configuration error: TLS certificate check failed"), line
    assert not sandbox.calls(), "no request may have got through"
    print(f"exit 78 after {took:.2f} s")  # reported, not asserted (timings belong in bench/)


@pytest.fixture
def sandbox_tls(request: pytest.FixtureRequest) -> Iterator[SandboxTLS]:
    """Certificates that do not verify even when their CA is trusted: wrong host name, expired."""
    kind = getattr(request, "param", "good")
    tls = {
        "good": SandboxTLS,
        "wrong_name": lambda: SandboxTLS(("slack.example.com",)),
        "localhost_only": lambda: SandboxTLS(("localhost",)),
        "expired": lambda: SandboxTLS(expired=True),
    }[kind]()
    yield tls
    tls.cleanup()


@pytest.mark.parametrize(
    ("sandbox_tls", "cause", "remedy"),
    [
        ("wrong_name", "tls_wrong_name", "SLACK_API_URL"),
        ("expired", "tls_expired", "clock"),
    ],
    indirect=["sandbox_tls"],
)
def test_a_trusted_ca_does_not_excuse_a_bad_certificate(sandbox: Sandbox, cause: str, remedy: str) -> None:
    result = run_once(bot_env(sandbox), timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 78, output
    assert_one_clear_line(output, "certificate", cause, remedy)


@pytest.mark.parametrize("sandbox_tls", ["localhost_only"], indirect=True)
def test_a_websocket_certificate_that_fails_is_fatal_too(sandbox: Sandbox) -> None:
    # The Web API is reached as "localhost" (the certificate's name), the WebSocket as 127.0.0.1 (not in it):
    # signing in works, every handshake fails verification. That is no reason to retry forever.
    api_url = f"https://localhost:{sandbox.api_port}/api/"
    with run_bot(bot_env(sandbox, SLACK_API_URL=api_url)) as bot:
        code = bot.wait_exit(30)
        output = bot.log
    assert code == 78, output
    assert "signed in as" in output
    line = assert_one_clear_line(output, "certificate", "tls_wrong_name", f"127.0.0.1:{sandbox.ws_port}")
    assert "CRITICAL" in line, line
    assert not sandbox.connections(live_only=True)


def test_an_unreadable_ca_bundle_is_named(sandbox: Sandbox, tmp_path: Path) -> None:
    not_pem = tmp_path / "bundle.pem"
    not_pem.write_text("this is not a certificate\n")
    for value, says in ((str(tmp_path / "missing.pem"), "is not a file"), (str(not_pem), "holds no readable CA")):
        result = run_once(bot_env(sandbox, SSL_CERT_FILE=value), timeout=30)
        output = result.stdout + result.stderr
        assert result.returncode == 78, output
        assert "Traceback" not in output, output
        assert f"SSL_CERT_FILE={value!r} {says}" in output, output
    assert not sandbox.calls(), "a bad setting is caught before any request"


def test_python_m_sandbox_tls_prints_the_ca_to_trust() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--tls"],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        info = json.loads(proc.stdout.readline())
        hint = next(line for line in proc.stderr if "SSL_CERT_FILE=" in line)
        assert info["api_url"].startswith("https://127.0.0.1:")
        assert f"SSL_CERT_FILE={info['ca_file']}" in hint
        context = ssl.create_default_context(cafile=info["ca_file"])
        request = urllib.request.Request(
            info["api_url"] + "auth.test", data=b"", headers={"Authorization": f"Bearer {info['bot_token']}"}
        )
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        with opener.open(request, timeout=10) as response:
            assert json.loads(response.read())["ok"] is True
    finally:
        proc.terminate()
        proc.wait(10)
    assert not Path(info["ca_file"]).exists(), "the throwaway CA is removed when the sandbox stops"


def test_without_tls_the_sandbox_hands_out_ws_urls() -> None:
    with Sandbox(TEST_CONFIG) as sb:
        assert sb.api_url.startswith("http://")
        assert ws_url(sb).startswith("ws://")
