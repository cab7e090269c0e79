"""The stock handlers' constructors, keyword for keyword (issue 19: all 11 of the sync handler's raised TypeError),
and what each keyword means under supervision. No network: Bolt's token check is off."""

from __future__ import annotations

import base64
import inspect
import logging
import ssl

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk import WebClient

from nonstop import AsyncSupervisedSocketModeHandler, SupervisedSocketModeHandler
from nonstop.config.settings import SupervisorSettings
from nonstop.errors import ConfigError
from nonstop.handlers.options import StockOptions

TOKEN = "xapp-1-A0TEST-0-options"


def app(**client: object) -> App:
    return App(client=WebClient(token="xoxb-test", **client), token_verification_enabled=False)  # type: ignore[arg-type]


def async_app() -> AsyncApp:
    return AsyncApp(token="xoxb-test")  # AsyncApp checks its token lazily, at the first request


def parameters(cls: type) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]


@pytest.mark.parametrize(
    ("ours", "stock"),
    [(SupervisedSocketModeHandler, SocketModeHandler), (AsyncSupervisedSocketModeHandler, AsyncSocketModeHandler)],
    ids=["sync", "async"],
)
def test_the_stock_signature_is_ours_positional_order_included(ours: type, stock: type) -> None:
    theirs = parameters(stock)
    assert parameters(ours)[: len(theirs)] == theirs
    extras = parameters(ours)[len(theirs) :]
    assert extras
    assert all(kind is inspect.Parameter.KEYWORD_ONLY for _, kind in extras), "Nonstop's own: keywords"


def test_every_stock_keyword_of_the_sync_handler_is_accepted_by_name_and_in_position() -> None:
    logger = logging.getLogger("my-app")
    client = WebClient(token="xoxb-other", base_url="http://127.0.0.1:9/api/")
    by_name = SupervisedSocketModeHandler(
        app=app(),
        app_token=TOKEN,
        logger=logger,
        web_client=client,
        proxy="http://127.0.0.1:3128",
        proxy_headers={"Proxy-Authorization": "Basic " + base64.b64encode(b"me:pw").decode()},
        auto_reconnect_enabled=True,
        trace_enabled=True,
        all_message_trace_enabled=True,
        ping_pong_trace_enabled=True,
        ping_interval=10,
        receive_buffer_size=4096,
        concurrency=4,
    )
    positional = SupervisedSocketModeHandler(
        app(), TOKEN, logger, client, None, None, True, True, False, False, 5, 1024, 3
    )
    for handler in (by_name, positional):
        assert handler.client.logger is logger
        assert handler.client.web_client is client
        assert handler.client.trace_enabled is True
    assert by_name.client.ping_interval == 10
    assert positional.client.ping_interval == 5


def test_every_stock_keyword_of_the_async_handler_is_accepted() -> None:
    logger = logging.getLogger("my-async-app")
    handler = AsyncSupervisedSocketModeHandler(
        app=async_app(), app_token=TOKEN, logger=logger, web_client=None, proxy=None, ping_interval=3, loop=None
    )
    assert handler.client.logger is logger
    assert handler.client.ping_interval == 3


def test_the_wrong_kind_of_app_is_a_type_error_naming_the_right_handler() -> None:
    with pytest.raises(TypeError, match="for an AsyncApp use AsyncSupervisedSocketModeHandler"):
        SupervisedSocketModeHandler(async_app(), TOKEN)
    with pytest.raises(TypeError, match="for an App use SupervisedSocketModeHandler"):
        AsyncSupervisedSocketModeHandler(app(), TOKEN)


@pytest.mark.parametrize(
    ("keywords", "error", "message"),
    [
        ({"auto_reconnect_enabled": False}, ValueError, "a supervised handler always reconnects"),
        ({"ping_interval": 0}, ValueError, "ping_interval=0 is out of range"),
        ({"concurrency": 2.5}, TypeError, "concurrency must be an int"),
        ({"receive_buffer_size": 0}, ValueError, "receive_buffer_size must be a positive int"),
        ({"logger": "nonstop"}, TypeError, "logger must be a logging.Logger"),
        ({"proxy": "socks5://127.0.0.1:1080"}, ValueError, "is not an http"),
        ({"proxy_headers": {"X-Custom": "1"}, "proxy": "http://p:1"}, ValueError, "X-Custom is not supported"),
        ({"proxy_headers": {"Proxy-Authorization": "Basic x"}}, ValueError, "without a proxy"),
    ],
)
def test_what_cannot_be_honoured_is_refused_in_one_line(keywords: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as raised:
        SupervisedSocketModeHandler(app(), TOKEN, **keywords)
    assert "\n" not in str(raised.value)


def test_a_proxy_login_header_becomes_the_proxy_login() -> None:
    header = {"Proxy-Authorization": "Basic " + base64.b64encode(b"me@corp:p w").decode()}
    options = StockOptions.build(app(), logger=None, web_client=None, proxy="http://proxy:3128", proxy_headers=header)
    assert options.proxy == "http://me%40corp:p%20w@proxy:3128"
    assert options.websocket_options()("wss://wss.example/link")["proxy"] == options.proxy  # type: ignore[misc]


def test_the_apps_proxy_and_tls_reach_the_websocket_but_one_copied_from_the_environment_is_left_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = ssl.create_default_context()
    options = StockOptions.build(app(proxy="http://corp:8080", ssl=context), logger=None, web_client=None, proxy=None)
    chosen = options.websocket_options()("wss://wss.example/link")  # type: ignore[misc]
    assert (chosen["proxy"], chosen["ssl"]) == ("http://corp:8080", context)
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "wss.example")
    copied = StockOptions.build(app(), logger=None, web_client=None, proxy=None)  # slack_sdk read HTTPS_PROXY
    assert copied.proxy is None
    assert copied.websocket_options() is None, "the environment's proxy: NO_PROXY decides, as for the Web API"


def test_ping_interval_and_concurrency_win_over_the_settings_and_keep_a_link_judged_fairly() -> None:
    options = StockOptions.build(app(), logger=None, web_client=None, proxy=None, ping_interval=10, concurrency=5)
    settings = options.apply(SupervisorSettings())
    assert (settings.ping_interval_s, settings.handler_threads) == (10, 5)
    assert settings.stale_after_s > settings.ping_interval_s + SupervisorSettings().pong_timeout_s
    faster = StockOptions.build(app(), logger=None, web_client=None, proxy=None, ping_interval=0.5)
    assert faster.apply(SupervisorSettings()).stale_after_s == SupervisorSettings().stale_after_s


def test_no_token_anywhere_is_one_line_naming_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="pass app_token=, or set SLACK_APP_TOKEN"):
        SupervisedSocketModeHandler(app())


def test_a_misspelled_setting_is_warned_about_by_the_handler_and_a_bad_one_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NONSTOP_DRAIN_TIMEOT", "3")
    with caplog.at_level(logging.WARNING, logger="nonstop.config.settings"):
        SupervisedSocketModeHandler(app(), TOKEN)
        SupervisedSocketModeHandler(app(), TOKEN)
    said = "NONSTOP_DRAIN_TIMEOT is not a Nonstop setting and is ignored; did you mean NONSTOP_DRAIN_TIMEOUT?"
    assert caplog.text.count(said) == 1, "once per process, however many handlers it makes"
    monkeypatch.setenv("NONSTOP_CONNECTIONS", "eleven")
    with pytest.raises(ConfigError, match="NONSTOP_CONNECTIONS='eleven' is not a number"):
        SupervisedSocketModeHandler(app(), TOKEN)
    assert SupervisedSocketModeHandler(app(), TOKEN, settings=SupervisorSettings()).client is not None, (
        "explicit settings: the environment is not read"
    )
