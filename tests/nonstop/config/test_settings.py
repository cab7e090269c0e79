from __future__ import annotations

import pytest

from nonstop.config.settings import DEFAULT_API_URL, load_settings
from nonstop.errors import ConfigError

TOKENS = {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_APP_TOKEN": "xapp-1-A1-2-abc"}


def test_defaults() -> None:
    settings = load_settings(TOKENS)
    assert settings.api_url == DEFAULT_API_URL
    assert settings.log_level == "INFO"
    assert settings.supervisor.connections == 2
    assert settings.supervisor.backoff_cap_s == 30.0
    assert settings.health_port == 8080


def test_api_url_gets_its_trailing_slash() -> None:
    assert load_settings(TOKENS | {"SLACK_API_URL": "http://127.0.0.1:9/api"}).api_url == "http://127.0.0.1:9/api/"


@pytest.mark.parametrize("value", ["0", "11", "1.5", "-1"])
def test_connections_must_be_1_to_10(value: str) -> None:
    with pytest.raises(ConfigError, match="NONSTOP_CONNECTIONS"):
        load_settings(TOKENS | {"NONSTOP_CONNECTIONS": value})


def test_error_messages_never_contain_the_token() -> None:
    secret = "xoxp-999-888-topsecretvalue"
    with pytest.raises(ConfigError) as info:
        load_settings({"SLACK_BOT_TOKEN": secret, "SLACK_APP_TOKEN": "xapp-1-A1-2-abc"})
    assert "topsecret" not in str(info.value)
    assert "xoxp-" in str(info.value)


@pytest.mark.parametrize(("value", "threads"), [("", 32), ("16", 16)])
def test_handler_threads(value: str, threads: int) -> None:
    assert load_settings(TOKENS | {"NONSTOP_HANDLER_THREADS": value}).supervisor.handler_threads == threads


def test_every_pool_size_reaches_its_setting() -> None:
    sup = load_settings(
        TOKENS | {"NONSTOP_HANDLER_THREADS": "7", "NONSTOP_COMMAND_THREADS": "3", "NONSTOP_MAX_BACKLOG": "50"}
    ).supervisor
    assert (sup.handler_threads, sup.command_threads, sup.max_backlog) == (7, 3, 50)


def test_the_app_keeps_a_durable_ledger_and_systemd_decides_where() -> None:
    assert load_settings(TOKENS).supervisor.ledger_url == "sqlite:///nonstop-ledger.sqlite3"
    under_systemd = load_settings(TOKENS | {"STATE_DIRECTORY": "/var/lib/nonstop"}).supervisor.ledger_url
    assert under_systemd == "sqlite:////var/lib/nonstop/nonstop-ledger.sqlite3"
    assert load_settings(TOKENS | {"NONSTOP_LEDGER": "memory://"}).supervisor.ledger_url == "memory://"


def test_an_unknown_ledger_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NONSTOP_LEDGER='postgres://x' is not a ledger URL"):
        load_settings(TOKENS | {"NONSTOP_LEDGER": "postgres://x"})


def test_every_real_setting_passes_without_a_warning() -> None:
    env = TOKENS | {
        "NONSTOP_CONNECTIONS": "3",
        "NONSTOP_PING_INTERVAL": "2",
        "NONSTOP_STALE_AFTER": "5",
        "NONSTOP_BACKOFF_BASE": "1",
        "NONSTOP_BACKOFF_CAP": "5",
        "NONSTOP_HEALTHY_AFTER": "3",
        "NONSTOP_CONNECT_TIMEOUT": "4",
        "NONSTOP_DRAIN_TIMEOUT": "4",
        "NONSTOP_DEDUP_TTL": "60",
        "NONSTOP_HANDLER_THREADS": "2",
        "NONSTOP_REPLY_DEADLINE": "0.5",
        "NONSTOP_UNSURE_ANSWER": "skip",
    }
    assert load_settings(env).warnings == ()


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("NONSTOP_CONECTIONS", "did you mean NONSTOP_CONNECTIONS?"),
        ("NONSTOP_HANDLER_THREAD", "did you mean NONSTOP_HANDLER_THREADS?"),
        ("NONSTOP_STALE", "did you mean NONSTOP_STALE_AFTER?"),
        ("NONSTOP_BANANA", "known: NONSTOP_BACKOFF_BASE, "),
    ],
)
def test_an_unknown_nonstop_variable_gets_one_warning_with_the_closest_name(name: str, hint: str) -> None:
    settings = load_settings(TOKENS | {name: "3"})
    assert len(settings.warnings) == 1
    assert settings.warnings[0].startswith(f"{name} is not a Nonstop setting and is ignored; ")
    assert hint in settings.warnings[0]
    assert settings.supervisor.connections == 2, "an unknown name changes nothing"


@pytest.mark.parametrize("value", ['"xoxb-1-2-abc"', "'xoxb-1-2-abc'"])
def test_quoted_tokens_are_told_to_lose_the_quotes(value: str) -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is wrapped in quotes: remove the quotes") as info:
        load_settings(TOKENS | {"SLACK_BOT_TOKEN": value})
    assert "1-2-abc" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"), [("SLACK_BOT_TOKEN", "xoxb-your-bot-token"), ("SLACK_APP_TOKEN", "xapp-your-app-level-token")]
)
def test_placeholders_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} is still the example value .*replace the placeholder in .env"):
        load_settings(TOKENS | {name: value})


def test_the_reply_deadline_is_given_in_minutes() -> None:
    assert load_settings(TOKENS).outbound.reply_deadline_s == 300.0
    assert load_settings(TOKENS | {"NONSTOP_REPLY_DEADLINE": "0.5"}).outbound.reply_deadline_s == 30.0


@pytest.mark.parametrize(("name", "value"), [("NONSTOP_REPLY_DEADLINE", "0"), ("NONSTOP_REPLY_DEADLINE", "soon"),
                                             ("NONSTOP_UNSURE_ANSWER", "twice")])  # fmt: skip
def test_bad_answer_settings_get_one_line_naming_them(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        load_settings(TOKENS | {name: value})
    assert "\n" not in str(info.value)


def test_unsure_answers_are_reposted_unless_told_to_skip() -> None:
    assert load_settings(TOKENS).outbound.unsure_answer == "repost"
    assert load_settings(TOKENS | {"NONSTOP_UNSURE_ANSWER": "SKIP"}).outbound.unsure_answer == "skip"
