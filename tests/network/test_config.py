"""`nonstop.net.network`: the one TLS context and proxy decision, read from the conventional variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nonstop.errors import ConfigError
from nonstop.net import network
from nonstop.net.network import from_env, proxy_display
from nonstop.redact import redact
from sandbox.tls import SandboxTLS

SLACK_API = "https://slack.com/api/"
SLACK_WSS = "wss://wss-primary.slack.com/link/?ticket=t&app_id=A1"


def test_nothing_set_means_system_cas_and_no_proxy() -> None:
    net = from_env({})
    assert net.proxy_for(SLACK_API) is None
    assert net.websocket_options(SLACK_WSS) == {"proxy": None, "ssl": net.ssl}
    assert net.trusted == "the system's CAs"
    assert net.ssl.check_hostname
    assert net.ssl.verify_mode.name == "CERT_REQUIRED"


def test_the_web_api_and_the_websocket_get_the_same_proxy_and_context() -> None:
    net = from_env({"HTTPS_PROXY": "http://proxy.corp.example:3128"})
    assert net.proxy_for(SLACK_API) == "http://proxy.corp.example:3128"
    options = net.websocket_options(SLACK_WSS)
    assert options["proxy"] == net.proxy_for(SLACK_API)
    assert options["ssl"] is net.ssl


def test_plain_ws_urls_get_no_tls_context() -> None:
    assert from_env({}).websocket_options("ws://127.0.0.1:4000/link/?ticket=t") == {"proxy": None}


@pytest.mark.parametrize(
    ("env", "chosen"),
    [
        ({"HTTPS_PROXY": "http://a:1", "https_proxy": "http://b:2", "HTTP_PROXY": "http://c:3"}, "http://a:1"),
        ({"https_proxy": "http://b:2", "HTTP_PROXY": "http://c:3"}, "http://b:2"),
        ({"HTTP_PROXY": "http://c:3", "http_proxy": "http://d:4"}, "http://c:3"),
        ({"http_proxy": "http://d:4"}, "http://d:4"),
        ({"HTTPS_PROXY": "  ", "http_proxy": "http://d:4"}, "http://d:4"),
        ({"HTTPS_PROXY": "proxy.corp.example:3128"}, "http://proxy.corp.example:3128"),
    ],
)
def test_proxy_variables_in_slack_sdks_order(env: dict[str, str], chosen: str) -> None:
    assert from_env(env).proxy_for(SLACK_API) == chosen


@pytest.mark.parametrize(
    ("no_proxy", "url", "bypassed"),
    [
        ("slack.com", SLACK_API, True),
        ("slack.com", SLACK_WSS, True),  # a domain covers its subdomains
        (".slack.com", SLACK_WSS, True),
        ("wss-primary.slack.com", SLACK_API, False),
        ("*", SLACK_WSS, True),
        ("localhost, 127.0.0.1", "https://127.0.0.1:4431/api/", True),
        ("127.0.0.1:4431", "https://127.0.0.1:4431/api/", True),  # host:port, one port only
        ("127.0.0.1:4431", "wss://127.0.0.1:4432/link", False),
        ("example.com", SLACK_API, False),
    ],
)
def test_no_proxy(no_proxy: str, url: str, bypassed: bool) -> None:
    net = from_env({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy})
    assert (net.proxy_for(url) is None) is bypassed
    assert (net.websocket_options(url)["proxy"] is None) is bypassed


def test_lowercase_no_proxy_wins_as_in_urllib() -> None:
    net = from_env({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "slack.com", "no_proxy": ""})
    assert net.proxy_for(SLACK_API) == "http://proxy:3128"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("socks5://alice:hunter2@proxy:1080", "only http:// proxies"),
        ("https://alice:hunter2@proxy:3128", "only http:// proxies"),
        ("http://alice:hunter2@proxy:port", "is not a proxy address"),
        ("http://alice:hunter2@proxy:3128/path", "is not a proxy address"),
        ("http://alice@proxy:3128", "no password"),
    ],
)
def test_bad_proxy_urls_are_one_line_without_the_password(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        from_env({"HTTPS_PROXY": value})
    assert "hunter2" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_credentials_are_kept_for_the_proxy_but_never_shown() -> None:
    net = from_env({"HTTPS_PROXY": "http://alice:p%40ss@proxy.corp.example:3128"})
    assert net.proxy_for(SLACK_API) == "http://alice:p%40ss@proxy.corp.example:3128"
    assert "p%40ss" not in net.describe(SLACK_API)
    assert "alice" not in net.describe(SLACK_API)
    assert proxy_display("http://alice:p%40ss@proxy.corp.example:3128") == "http://proxy.corp.example:3128"
    assert redact("proxy http://alice:p%40ss@proxy.corp.example:3128 refused") == (
        "proxy http://…redacted@proxy.corp.example:3128 refused"
    )
    assert "pa/ss" not in redact("HTTPS_PROXY=http://alice:pa/ss@proxy:3128")  # unencoded: still masked


def test_a_ca_bundle_is_trusted_in_addition_to_the_system(tmp_path: Path) -> None:
    tls = SandboxTLS()
    try:
        net = from_env({"SSL_CERT_FILE": tls.ca_file})
        subjects = [dict(x[0] for x in cert["subject"]) for cert in net.ssl.get_ca_certs()]
        assert any("Nonstop sandbox" in s.get("organizationName", "") for s in subjects)
        assert net.trusted == f"the system's CAs + SSL_CERT_FILE={tls.ca_file}"
    finally:
        tls.cleanup()


def test_bad_ca_settings_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"SSL_CERT_FILE=.* is not a file"):
        from_env({"SSL_CERT_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match=r"SSL_CERT_FILE=.* holds no readable CA"):
        from_env({"SSL_CERT_FILE": str(garbage)})
    with pytest.raises(ConfigError, match=r"SSL_CERT_DIR=.* is not a directory"):
        from_env({"SSL_CERT_DIR": str(garbage)})


def test_current_is_built_once_per_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in network.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    first = network.current()
    assert network.current() is first, "one TLS context for every connection"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    changed = network.current()
    assert changed is not first
    assert changed.proxy_for(SLACK_API) == "http://proxy:3128"
