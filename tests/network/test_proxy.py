"""The real bot through a real HTTP proxy on loopback (pproxy), over https:// and wss:// (and, where the
proxied requests differ, over plain http:// and ws:// as well).

What the proxy forwarded is read from its own log (one line per proxied request or CONNECT tunnel),
what reached Slack from the sandbox's records: the two must agree call for call and connection for
connection.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import Sandbox
from tests.botprocess import bot_env, run_bot, run_once
from tests.network.proxy import HttpProxy

SECRET = "s3cret-Proxy-Pass"


def settled(sb: Sandbox, proxy: HttpProxy) -> tuple[int, int, int, int]:
    """(Web API calls the sandbox answered, requests the proxy forwarded to the Web API port,
    WebSocket connections the sandbox saw, tunnels the proxy opened to the WebSocket port)."""
    return len(sb.calls()), proxy.forwarded(sb.api_port), len(sb.connections()), proxy.forwarded(sb.ws_port)


def matched(sb: Sandbox, proxy: HttpProxy) -> tuple[int, int, int, int] | None:
    """The counts once the proxy's log and the sandbox's records agree, else None."""
    calls, proxied_calls, links, tunnels = counts = settled(sb, proxy)
    return counts if calls == proxied_calls and links == tunnels else None


@pytest.mark.parametrize("sandbox_tls", [True, False], ids=["tls", "plain"], indirect=True)
def test_every_web_api_call_and_every_websocket_goes_through_the_proxy(sandbox: Sandbox, proxy: HttpProxy) -> None:
    with run_bot(bot_env(sandbox, HTTPS_PROXY=proxy.url())) as bot:
        bot.wait_for_log(r"connection #2: connected")
        d = sandbox.mention("hello through the proxy")
        sandbox.wait_for_message(thread_ts=d.ts)  # posted by the listener's own (per-request) client
        sandbox.wait_for_ack(sandbox.slash_command("status"))
        sandbox.disconnect("refresh_requested")  # new tickets and new tunnels, while running
        bot.wait_for_log(r"old connection closed", count=2)
        counts = sandbox.wait_until(
            lambda: matched(sandbox, proxy),
            timeout=10,
            what=f"proxy log to match the sandbox's records: {settled(sandbox, proxy)}",
        )
        _, proxied_calls, links, tunnels = counts
        assert proxy.forwarded() == proxied_calls + tunnels, proxy.log  # nothing else went through it
        assert "via proxy http://127.0.0.1:" in bot.log
    assert {"auth.test", "apps.connections.open", "chat.postMessage"} <= {c.method for c in sandbox.calls()}
    assert links >= 4, "two links, then two replacements"


@pytest.mark.parametrize(("proxy_var", "no_proxy_var"), [("HTTPS_PROXY", "NO_PROXY"), ("https_proxy", "no_proxy")])
def test_no_proxy_covering_slack_bypasses_the_proxy(
    sandbox: Sandbox, proxy: HttpProxy, proxy_var: str, no_proxy_var: str
) -> None:
    with run_bot(bot_env(sandbox, **{proxy_var: proxy.url(), no_proxy_var: "localhost,127.0.0.1"})) as bot:
        bot.wait_for_log(r"connection #2: connected")
        d = sandbox.mention("hello, directly")
        sandbox.wait_for_message(thread_ts=d.ts)
        sandbox.wait_for_ack(sandbox.slash_command("status"))
        assert "reached directly (NO_PROXY matches)" in bot.log
    assert len(sandbox.calls()) >= 4
    assert proxy.forwarded() == 0, proxy.log


def test_proxy_killed_while_running_is_waited_out_and_the_bot_comes_back(sandbox: Sandbox, proxy: HttpProxy) -> None:
    with run_bot(bot_env(sandbox, HTTPS_PROXY=proxy.url())) as bot:
        bot.wait_for_log(r"connection #2: connected")
        proxy.kill()
        bot.wait_for_log(r"dropped after", count=2)
        failures = bot.wait_for_log(r"could not get a Socket Mode URL .*; retrying in \d", count=3)
        assert not sandbox.connections(live_only=True)
        proxy.start()  # the same port, like a proxy restarted by its supervisor
        bot.wait_for_log(r"connected in", count=4, timeout=20)
        d = sandbox.mention("back through the proxy")
        sandbox.wait_for_message(thread_ts=d.ts)
        assert bot.proc.poll() is None
    assert all(f"through proxy http://127.0.0.1:{proxy.port}" in line for line in failures), failures
    assert proxy.forwarded(sandbox.ws_port) == len(sandbox.connections()), proxy.log


def test_a_tunnel_that_stops_forwarding_is_found_half_open(sandbox: Sandbox, proxy: HttpProxy) -> None:
    with run_bot(bot_env(sandbox, HTTPS_PROXY=proxy.url())) as bot:
        bot.wait_for_log(r"connection #2: connected")
        proxy.freeze()  # TCP stays up on both sides; nothing crosses any more
        try:
            bot.wait_for_log(r"dropped after .*half-open link", count=2, timeout=15)
            assert len(sandbox.connections(live_only=True)) == 2, "the sandbox never saw them go"
        finally:
            proxy.thaw()
        bot.wait_for_log(r"connected in", count=4, timeout=20)
        d = sandbox.mention("after the frozen tunnel")
        sandbox.wait_for_message(thread_ts=d.ts)


@pytest.fixture
def login_proxy() -> Iterator[HttpProxy]:
    p = HttpProxy(credentials=f"nonstop:{SECRET}").start()
    yield p
    p.close()


@pytest.mark.parametrize("sandbox_tls", [True, False], ids=["tls", "plain"], indirect=True)
@pytest.mark.parametrize(("given", "says"), [(None, "asked for credentials"), ("nonstop:wrong", "refused the user")])
def test_a_proxy_login_that_fails_is_one_clear_line(
    sandbox: Sandbox, login_proxy: HttpProxy, given: str | None, says: str
) -> None:
    result = run_once(bot_env(sandbox, HTTPS_PROXY=login_proxy.url(given)), timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 78, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "407" in line and "Retrying cannot fix this" in line]
    assert len(lines) == 1, output
    assert f"the HTTP proxy http://127.0.0.1:{login_proxy.port} (from HTTPS_PROXY) {says}" in lines[0]
    assert "wrong" not in output
    assert login_proxy.refused_logins() >= 1, "it was the proxy that said no"
    assert not sandbox.calls()


def test_a_proxy_login_that_fails_on_the_websocket_only_is_fatal_too(sandbox: Sandbox, login_proxy: HttpProxy) -> None:
    # NO_PROXY takes host:port: the Web API goes direct, the WebSocket's CONNECT meets the login.
    env = bot_env(sandbox, HTTPS_PROXY=login_proxy.url("nonstop:wrong"), NO_PROXY=f"127.0.0.1:{sandbox.api_port}")
    with run_bot(env) as bot:
        code = bot.wait_exit(30)
        log = bot.log
    assert code == 78, log
    assert "signed in as" in log
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "Retrying cannot fix this" in line]
    assert len(lines) == 1, log
    assert "CRITICAL" in lines[0]
    assert f"proxy http://127.0.0.1:{login_proxy.port}" in lines[0]
    assert "407" in lines[0]
    assert "wrong" not in log
    assert login_proxy.forwarded() == 0


def test_a_proxy_that_starts_asking_for_a_login_while_running_stops_the_bot(sandbox: Sandbox, proxy: HttpProxy) -> None:
    # The proxy is restarted with a login the bot does not have (a rotated service password, say):
    # the next apps.connections.open meets a 407 that no retry can answer.
    with run_bot(bot_env(sandbox, HTTPS_PROXY=proxy.url())) as bot:
        bot.wait_for_log(r"connection #2: connected")
        proxy.kill()
        proxy.credentials = f"nonstop:{SECRET}"
        proxy.start()
        code = bot.wait_exit(30)
        log = bot.log
    assert code == 78, log
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "Retrying cannot fix this" in line]
    assert len(lines) == 1, log
    assert f"the HTTP proxy http://127.0.0.1:{proxy.port} (from HTTPS_PROXY) asked for credentials" in lines[0]
    assert "CRITICAL" in lines[0]
    assert "redacted" not in lines[0], "the remedy must survive the log's redaction intact"
    assert proxy.refused_logins() >= 1


def test_the_right_login_works_and_the_password_never_reaches_the_log(sandbox: Sandbox, login_proxy: HttpProxy) -> None:
    env = bot_env(sandbox, HTTPS_PROXY=login_proxy.url(f"nonstop:{SECRET}"), LOG_LEVEL="DEBUG")
    with run_bot(env) as bot:
        bot.wait_for_log(r"connection #2: connected")
        d = sandbox.mention("hello with a login")
        sandbox.wait_for_message(thread_ts=d.ts)
        log = bot.log
    assert login_proxy.forwarded(sandbox.ws_port) == 2
    assert login_proxy.refused_logins() == 0
    assert SECRET not in log
    assert "nonstop:" + SECRET[:4] not in log
