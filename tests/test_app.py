"""`python app.py` with bad input: one clear line, exit 78 (EX_CONFIG), no traceback, no token, no network."""

from __future__ import annotations

import signal

import pytest

from sandbox import Sandbox
from tests.botprocess import bot_env, minimal_env, run_bot, run_once

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


def test_ctrl_c_while_slack_is_unreachable_at_startup_exits_quietly(sandbox: Sandbox) -> None:
    sandbox.outage(30, mode="refused", drop_connections=False)
    with run_bot(bot_env(sandbox)) as bot:
        bot.wait_for_log(r"cannot reach Slack's Web API", timeout=10)
        bot.signal(signal.SIGINT)
        assert bot.wait_exit(timeout=10) == 130
        assert "Traceback" not in bot.log
        assert "interrupted before connecting" in bot.log
