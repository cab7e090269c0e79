"""`python app.py` with bad input: one clear line, exit 78 (EX_CONFIG), no traceback, no token, no network."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request

import pytest

from sandbox import Sandbox
from sandbox.ports import free_port
from tests.botprocess import REPO, bot_env, minimal_env, run_bot, run_once

# Well-formed fakes, split so that secret scanners do not mistake them for leaked tokens.
GOOD_BOT = "xoxb-" + "1111111111-2222222222-abcdefABCDEF"
GOOD_APP = "xapp-1-" + "A0EMUL001-3333333333-abcdef0123456789"


def assert_config_error(result, *, mentions: tuple[str, ...], secrets: tuple[str, ...] = ()) -> None:
    assert result.returncode == 78, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in mentions:
        assert needle in lines[0], lines[0]
    for secret in secrets:
        assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("variables", "mentions"),
    [
        ({"SLACK_APP_TOKEN": GOOD_APP}, ("SLACK_BOT_TOKEN is not set", "OAuth & Permissions")),
        ({"SLACK_BOT_TOKEN": "", "SLACK_APP_TOKEN": GOOD_APP}, ("SLACK_BOT_TOKEN is not set", "xoxb-")),
        ({"SLACK_BOT_TOKEN": GOOD_BOT}, ("SLACK_APP_TOKEN is not set", "App-Level Tokens")),
        ({"SLACK_BOT_TOKEN": GOOD_APP, "SLACK_APP_TOKEN": GOOD_APP}, ("SLACK_BOT_TOKEN starts with 'xapp-'", "xoxb-")),
        ({"SLACK_BOT_TOKEN": GOOD_BOT, "SLACK_APP_TOKEN": GOOD_BOT}, ("SLACK_APP_TOKEN starts with 'xoxb-'", "xapp-")),
        ({"SLACK_BOT_TOKEN": GOOD_BOT + " ", "SLACK_APP_TOKEN": GOOD_APP}, ("SLACK_BOT_TOKEN contains whitespace",)),
        ({"SLACK_BOT_TOKEN": GOOD_BOT, "SLACK_APP_TOKEN": " " + GOOD_APP}, ("SLACK_APP_TOKEN contains whitespace",)),
        ({"SLACK_BOT_TOKEN": "hello", "SLACK_APP_TOKEN": GOOD_APP}, ("does not look like a Slack token",)),
    ],
)
def test_bad_tokens_end_before_any_network_call(sandbox: Sandbox, variables: dict[str, str], mentions) -> None:
    result = run_once(minimal_env(SLACK_API_URL=sandbox.api_url, **variables))
    assert_config_error(result, mentions=mentions, secrets=(GOOD_BOT, GOOD_APP))
    assert sandbox.calls() == [], "a configuration error must be found before talking to Slack"


@pytest.mark.parametrize(
    ("variables", "mentions"),
    [
        ({"NONSTOP_CONNECTIONS": "11"}, ("NONSTOP_CONNECTIONS=11 is out of range",)),
        ({"NONSTOP_CONNECTIONS": "two"}, ("NONSTOP_CONNECTIONS='two' is not a number",)),
        ({"LOG_LEVEL": "LOUD"}, ("LOG_LEVEL='LOUD' is not one of",)),
        ({"SLACK_API_URL": "slack.com/api"}, ("SLACK_API_URL='slack.com/api' is not an http(s) URL",)),
        ({"NONSTOP_PING_INTERVAL": "5", "NONSTOP_STALE_AFTER": "4"}, ("NONSTOP_STALE_AFTER (4) must be longer",)),
    ],
)
def test_bad_settings_are_named(variables: dict[str, str], mentions) -> None:
    env = minimal_env(SLACK_BOT_TOKEN=GOOD_BOT, SLACK_APP_TOKEN=GOOD_APP, **variables)
    assert_config_error(run_once(env), mentions=mentions, secrets=(GOOD_BOT, GOOD_APP))


@pytest.mark.parametrize(("fault", "code"), [("unknown", "invalid_auth"), ("revoked", "token_revoked")])
def test_slack_rejecting_the_bot_token_at_startup_is_a_config_error(sandbox: Sandbox, fault: str, code: str) -> None:
    env = bot_env(sandbox)
    if fault == "unknown":
        env["SLACK_BOT_TOKEN"] = GOOD_BOT
    else:
        sandbox.revoke("bot")
    result = run_once(env)
    assert_config_error(result, mentions=(code, "SLACK_BOT_TOKEN"), secrets=(GOOD_BOT, sandbox.bot_token))
    assert sandbox.calls("apps.connections.open") == [], "no socket before the bot token is known good"


def test_unreachable_slack_at_startup_is_retried_not_fatal(sandbox: Sandbox) -> None:
    sandbox.outage(3, mode="refused", drop_connections=False)
    with run_bot(bot_env(sandbox)) as bot:
        bot.wait_for_log(r"cannot reach Slack's Web API .*retrying in", timeout=10)
        sandbox.wait_for_connections(2, timeout=15)
        assert bot.proc.poll() is None


def test_unknown_app_token_is_fatal_at_once(sandbox: Sandbox) -> None:
    env = bot_env(sandbox, SLACK_APP_TOKEN="xapp-1-" + "A0EMUL001-0000000000-notarealtoken")
    with run_bot(env) as bot:
        assert bot.wait_exit(timeout=10) == 78
        assert len(sandbox.calls("apps.connections.open")) <= 3
        fatal = [line for line in bot.log.splitlines() if "CRITICAL" in line]
        assert len(fatal) == 1, bot.log
        assert "invalid_auth" in fatal[0]
        assert "SLACK_APP_TOKEN" in fatal[0]
        assert "notarealtoken" not in bot.log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_signing_in_exits_0_with_one_line(sandbox: Sandbox, sig: signal.Signals) -> None:
    sandbox.outage(30, mode="refused", drop_connections=False)
    with run_bot(bot_env(sandbox)) as bot:
        bot.wait_for_log(r"cannot reach Slack's Web API", timeout=10)
        bot.signal(sig)
        assert bot.wait_exit(timeout=10) == 0
        assert "Traceback" not in bot.log
        said = [line for line in bot.log.splitlines() if line.startswith("nonstop: ")]
        assert said == [f"nonstop: {sig.name} while signing in to Slack; stopped (nothing was connected yet)"]


def test_help_prints_the_usage_and_exits_0() -> None:
    result = run_once(minimal_env(), args=("--help",))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python app.py [-h] [--sandbox]")
    assert "--sandbox" in result.stdout
    assert "configuration error" not in result.stdout + result.stderr, "--help must not try to start"


def test_an_unknown_flag_exits_2_with_the_usage() -> None:
    result = run_once(minimal_env(), args=("--sandbx",))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: python app.py")
    assert "unrecognized arguments: --sandbx" in result.stderr
    assert "configuration error" not in result.stderr, "a typo must not try a real start"


def env_example_tokens() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = (line.split("=", 1) for line in lines if line.startswith("SLACK_") and "=" in line)
    return {name: value for name, value in pairs if name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")}


def test_tokens_copied_unedited_from_env_example_are_refused_before_any_network_call(sandbox: Sandbox) -> None:
    placeholders = env_example_tokens()
    assert set(placeholders) == {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"}, "the test reads the shipped .env.example"
    result = run_once(minimal_env(SLACK_API_URL=sandbox.api_url, **placeholders))
    assert_config_error(result, mentions=("SLACK_BOT_TOKEN", "replace the placeholder in .env"))
    assert sandbox.calls() == []


@pytest.mark.parametrize("quote", ['"', "'"])
def test_quoted_tokens_are_told_to_lose_the_quotes(sandbox: Sandbox, quote: str) -> None:
    env = minimal_env(SLACK_API_URL=sandbox.api_url, SLACK_BOT_TOKEN=GOOD_BOT, SLACK_APP_TOKEN=quote + GOOD_APP + quote)
    assert_config_error(run_once(env), mentions=("SLACK_APP_TOKEN", "remove the quotes"), secrets=(GOOD_BOT, GOOD_APP))
    assert sandbox.calls() == []


def test_an_api_url_that_is_not_the_web_api_is_named_and_fatal(sandbox: Sandbox) -> None:
    root = sandbox.api_url.removesuffix("api/")  # the classic mistake: the host without /api/
    result = run_once(bot_env(sandbox, SLACK_API_URL=root))
    assert_config_error(result, mentions=(f"SLACK_API_URL={root}", "not_found", "/api/"), secrets=(sandbox.bot_token,))


def test_an_unreachable_api_url_is_retried_quietly_with_a_hint(sandbox: Sandbox) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/"
    with run_bot(bot_env(sandbox, SLACK_API_URL=dead)) as bot:
        lines = bot.wait_for_log(r"cannot reach Slack's Web API", timeout=15, count=2)
        assert all("check SLACK_API_URL" in line for line in lines), lines
        assert "slack_sdk" not in bot.log, "slack_sdk's own error and retry lines are noise here"
        assert bot.proc.poll() is None, "unreachable is not fatal: it may come back"


def test_a_misspelled_setting_gets_one_warning_with_the_closest_name(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_CONECTIONS="3")) as bot:
        bot.wait_for_log(r"signed in as", timeout=15)
        warnings = [line for line in bot.log.splitlines() if "NONSTOP_CONECTIONS" in line]
        assert len(warnings) == 1, bot.log
        assert "WARNING" in warnings[0]
        assert "did you mean NONSTOP_CONNECTIONS?" in warnings[0]


def test_probes_show_the_configured_target_while_still_signing_in(sandbox: Sandbox) -> None:
    sandbox.outage(60, mode="refused", drop_connections=False)
    port = free_port()
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="3", HEALTH_PORT=str(port))) as bot:
        bot.wait_for_log(r"cannot reach Slack's Web API", timeout=15)
        status, ready = get_json(f"http://127.0.0.1:{port}/readyz")
        assert status == 503
        assert ready["target_connections"] == 3
        metrics = get_text(f"http://127.0.0.1:{port}/metrics")
        assert "nonstop_connections_target 3.0" in metrics.splitlines()


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_text(url: str) -> str:
    with OPENER.open(url, timeout=5) as response:
        return response.read().decode()


def get_json(url: str) -> tuple[int, dict]:
    try:
        with OPENER.open(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_missing_hello_is_reported_with_a_readable_deadline(sandbox: Sandbox) -> None:
    sandbox.withhold_hello(True)
    with run_bot(bot_env(sandbox, NONSTOP_CONNECT_TIMEOUT="1")) as bot:
        [line, *_] = bot.wait_for_log(r"no hello from Slack within", timeout=15)
        assert re.search(r"no hello from Slack within \d+\.\d s", line), line  # not "within 0.99849 s"
