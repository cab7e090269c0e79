"""One network configuration for every connection the bot makes: which CAs to trust, and which proxy.

The Web API (slack_sdk's `WebClient`, and the per-request copies Bolt makes of it) and every Socket
Mode WebSocket (`websockets`) are separate code paths with separate defaults: slack_sdk reads
`HTTPS_PROXY`, then `HTTP_PROXY`, and leaves `NO_PROXY` to urllib; websockets asks urllib, where
`https_proxy` beats `HTTPS_PROXY` and `HTTP_PROXY` does not count for `wss://`; each builds its own
TLS context. Left alone, they can disagree, and one
of them then works from the office network while the other does not. Here both get the same TLS
context and the same proxy decision, made once from the conventional variables:

- `SSL_CERT_FILE` (a PEM bundle) and `SSL_CERT_DIR` (a hashed directory): CAs trusted *in addition*
  to the system's, e.g. the CA of a TLS-inspecting company proxy. Certificate checks are always on.
- `HTTPS_PROXY` (or `https_proxy`; `HTTP_PROXY`/`http_proxy` when neither is set, slack_sdk's order,
  so Bolt's per-request clients, which read the environment themselves, agree): an `http://` proxy,
  optionally `http://user:password@host:port`. The Web API goes through it as proxied requests, the
  WebSocket as an HTTP CONNECT tunnel.
- `NO_PROXY` (or `no_proxy`, which wins, as in urllib): hosts that bypass the proxy, matched with
  urllib's own rule, the one Bolt's per-request clients apply as well.

Failures no retry can fix are recognised here (`Network.problem`): a certificate that does not
verify, and a proxy that refuses the credentials (HTTP 407). The messages and remedies live in
`nonstop.net.retry` with the other fatal errors.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, HttpRequest, HttpResponse, RetryState
from websockets.exceptions import InvalidProxyStatus

from nonstop.errors import ConfigError

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")  # slack_sdk's order of precedence
ENV_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR", *PROXY_VARS, "NO_PROXY", "no_proxy")

# OpenSSL verification results (X509_V_ERR_*) grouped by what a human has to do about them.
_UNTRUSTED = {2, 18, 19, 20, 21}  # issuer unknown, self-signed (leaf or in chain), cannot verify the leaf
_EXPIRED = {9, 10}  # not yet valid, expired
_WRONG_NAME = {62, 64}  # host name mismatch, IP address mismatch


@dataclass(frozen=True)
class NetworkProblem:
    """A failure that retrying cannot fix. `cause` is a key of `policy.FATAL_ERRORS`; `detail` is
    one line without secrets, saying what failed where."""

    cause: str
    detail: str


@dataclass(frozen=True)
class Network:
    ssl: ssl.SSLContext
    trusted: str  # which CAs are trusted, in words (for the start-up line and messages)
    proxy: str | None  # http://[user:password@]host:port, or None
    proxy_source: str  # the variable the proxy came from ("" without a proxy)
    no_proxy: str | None

    def proxy_for(self, url: str) -> str | None:
        """The proxy to use for `url`, or None to connect directly (no proxy set, or NO_PROXY matches)."""
        if self.proxy is None:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        if self.no_proxy and urllib.request.proxy_bypass_environment(host, {"no": self.no_proxy}):
            return None
        return self.proxy

    def websocket_options(self, url: str) -> dict[str, Any]:
        """Keyword arguments for `websockets.asyncio.client.connect(url, …)`: the same proxy decision and
        TLS context as the Web API. Always an explicit `proxy`, so websockets never reads the environment."""
        options: dict[str, Any] = {"proxy": self.proxy_for(url)}
        if urlsplit(url).scheme == "wss":
            options["ssl"] = self.ssl
        return options

    def through(self, url: str) -> str:
        """A suffix for failure lines, naming the proxy when `url` goes through one (else ""): a proxy
        that is down must not be mistaken for Slack being down."""
        proxy = self.proxy_for(url)
        return f" (through proxy {proxy_display(proxy)})" if proxy is not None else ""

    def describe(self, url: str) -> str:
        """One line for the log: the CAs trusted and the route to `url` (no credentials)."""
        proxy = self.proxy_for(url)
        if proxy is not None:
            route = f"via proxy {proxy_display(proxy)} (from {self.proxy_source})"
        elif self.proxy is not None:
            route = "directly (NO_PROXY matches)"
        else:
            route = "directly (no proxy set)"
        return f"TLS trusts {self.trusted}; {_host_port(url)} is reached {route}"

    def problem(self, error: BaseException, url: str) -> NetworkProblem | None:
        """If `error` (raised while talking to `url`) is one that retrying cannot fix, say which."""
        proxy = self.proxy_for(url)
        for e in _chain(error):
            if isinstance(e, ssl.SSLCertVerificationError):
                return NetworkProblem(_certificate_cause(e), _certificate_detail(e, url, self.through(url)))
            if proxy is not None and _is_407(e):
                return NetworkProblem("proxy_auth", self._proxy_auth_detail(proxy))
        return None

    def _proxy_auth_detail(self, proxy: str) -> str:
        given = "refused the user name and password" if "@" in urlsplit(proxy).netloc else "asked for credentials"
        return (
            f"the HTTP proxy {proxy_display(proxy)} (from {self.proxy_source}) {given} "
            "(HTTP 407 Proxy Authentication Required)"
        )


class RetryConnectionErrors(ConnectionErrorRetryHandler):
    """slack_sdk's default (one quick retry after a connection error), minus the errors that a retry
    cannot fix: a certificate that does not verify fails at once, with one message."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if error is not None and current().problem(error, request.url) is not None:
            return False
        return super()._can_retry(state=state, request=request, response=response, error=error)


def from_env(env: Mapping[str, str]) -> Network:
    """Build the network configuration from `env`. Raises `ConfigError` (one line, no secrets)."""
    context = ssl.create_default_context()  # the system's CAs; check_hostname and CERT_REQUIRED, always
    trusted = ["the system's CAs"]
    cafile = env.get("SSL_CERT_FILE", "").strip()
    if cafile:
        if not Path(cafile).is_file():
            raise ConfigError(f"SSL_CERT_FILE={cafile!r} is not a file: expected a bundle of CA certificates (PEM).")
        try:
            context.load_verify_locations(cafile=cafile)
        except (ssl.SSLError, OSError, ValueError):
            raise ConfigError(
                f"SSL_CERT_FILE={cafile!r} holds no readable CA certificate: expected a bundle of CA certificates "
                "(PEM, '-----BEGIN CERTIFICATE-----')."
            ) from None
        trusted.append(f"SSL_CERT_FILE={cafile}")
    capath = env.get("SSL_CERT_DIR", "").strip()
    if capath:
        if not Path(capath).is_dir():
            raise ConfigError(
                f"SSL_CERT_DIR={capath!r} is not a directory: expected a directory of hashed CA certificates."
            )
        context.load_verify_locations(capath=capath)
        trusted.append(f"SSL_CERT_DIR={capath}")
    source = next((name for name in PROXY_VARS if env.get(name, "").strip()), "")
    proxy = _proxy_url(source, env[source].strip()) if source else None
    return Network(
        ssl=context,
        trusted=" + ".join(trusted),
        proxy=proxy,
        proxy_source=source,
        no_proxy=_no_proxy(env),
    )


def current() -> Network:
    """The configuration for the process environment: built once per distinct set of the variables
    above, so the Web API client and every WebSocket share one TLS context and one proxy decision."""
    return _cached(tuple(os.environ.get(name) for name in ENV_VARS))


@functools.lru_cache(maxsize=4)
def _cached(values: tuple[str | None, ...]) -> Network:
    return from_env({name: value for name, value in zip(ENV_VARS, values, strict=True) if value is not None})


def proxy_display(url: str) -> str:
    """A proxy URL without its credentials: safe for logs and messages (even when malformed)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _proxy_url(name: str, raw: str) -> str:
    url = raw if "://" in raw else f"http://{raw}"  # "host:port" is common, and urllib accepts it
    parts = urlsplit(url)
    shown = proxy_display(url)
    if parts.scheme != "http":
        raise ConfigError(
            f"{name}={shown!r}: only http:// proxies are supported (the WebSocket goes through an HTTP CONNECT "
            "tunnel, TLS inside it), e.g. http://proxy.example.com:3128"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{name}={shown!r} is not a proxy address: expected http://host:port")
    if parts.username is not None and parts.password is None:
        raise ConfigError(f"{name} names a proxy user but no password: expected http://user:password@host:port")
    return url.rstrip("/")


def _no_proxy(env: Mapping[str, str]) -> str | None:
    # urllib's precedence (the one Bolt's per-request clients see): lowercase wins, even when empty.
    if "no_proxy" in env:
        return env["no_proxy"].strip() or None
    return env.get("NO_PROXY", "").strip() or None


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    return f"{parts.hostname}:{port}"


def _chain(error: BaseException) -> list[BaseException]:
    """The error, what it wraps (URLError.reason) and what caused it, without loops."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        reason = e.reason if isinstance(e, URLError) else None
        todo += [reason if isinstance(reason, BaseException) else None, e.__cause__, e.__context__]
    return seen


def _is_407(e: BaseException) -> bool:
    if isinstance(e, InvalidProxyStatus):  # the WebSocket's CONNECT
        return e.response.status_code == 407
    if isinstance(e, HTTPError):  # a plain http:// request through the proxy
        return e.code == 407
    if isinstance(e, SlackApiError):  # slack_sdk turned that HTTPError into a response
        return e.response.status_code == 407
    # urllib's CONNECT for https://: http.client raises OSError("Tunnel connection failed: 407 …")
    return isinstance(e, OSError) and str(e).startswith("Tunnel connection failed: 407")


def _certificate_cause(e: ssl.SSLCertVerificationError) -> str:
    code = e.verify_code
    if code in _UNTRUSTED:
        return "tls_untrusted"
    if code in _EXPIRED:
        return "tls_expired"
    if code in _WRONG_NAME:
        return "tls_wrong_name"
    return "tls_certificate"


def _certificate_detail(e: ssl.SSLCertVerificationError, url: str, via: str) -> str:
    why = (e.verify_message or e.reason or str(e)).rstrip(".")
    return f"TLS certificate check failed for {_host_port(url)}{via}: {why}"
