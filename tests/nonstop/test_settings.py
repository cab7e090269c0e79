from __future__ import annotations

import pytest

from nonstop.settings import DEFAULT_API_URL, ConfigError, load_settings

TOKENS = {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_APP_TOKEN": "xapp-1-A1-2-abc"}


def test_defaults() -> None:
    settings = load_settings(TOKENS)
    assert settings.api_url == DEFAULT_API_URL
    assert settings.log_level == "INFO"
    assert settings.supervisor.connections == 2
    assert settings.supervisor.backoff_cap_s == 10.0
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
