from __future__ import annotations

import pytest

from nonstop.settings import DEFAULT_API_URL, ConfigError, load_settings

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


@pytest.mark.parametrize(("value", "threads"), [("", 4), ("16", 16)])
def test_handler_threads(value: str, threads: int) -> None:
    assert load_settings(TOKENS | {"NONSTOP_HANDLER_THREADS": value}).supervisor.handler_threads == threads
