"""The one home of retry policy: what is worth retrying, and how long to wait before the next try.

- Transient failures (refused, DNS, TLS, timeouts, HTTP 5xx, a link that died young) back off
  exponentially with full jitter: a uniform draw from [0, min(cap, base * 2**n)].
- A rate limit waits exactly what Slack's `Retry-After` says.
- A live link that drops is replaced at once: Slack was reachable a moment ago. Only links that keep
  dying young (more than `free_young_drops` in a row) fall back to backoff, so a server that accepts
  and then kills every connection never causes a hot loop.
- A link that stayed healthy for a while resets the backoff.
- Errors that no retry can fix are fatal: the caller stops and a human is told what to do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Web API error codes that mean "this token will never work": retrying only hides the problem.
FATAL_ERRORS: dict[str, str] = {
    "invalid_auth": "Slack does not recognise the token",
    "not_authed": "no token reached Slack",
    "token_revoked": "the token has been revoked (or the app was uninstalled)",
    "token_expired": "the token has expired",
    "account_inactive": "the token belongs to a deleted user or workspace",
    "not_allowed_token_type": "the wrong kind of token was used (the app-level token must start with xapp-)",
    "missing_scope": "the app-level token lacks the connections:write scope",
    "team_disabled": "the workspace has been disabled",
    "link_disabled": "Socket Mode has been turned off for this app",
    # The network's (nonstop.network): certificates that do not verify, a proxy that refuses the credentials.
    "tls_untrusted": "the certificate is not signed by a CA this machine trusts",
    "tls_wrong_name": "the certificate was issued for another host name",
    "tls_expired": "the certificate has expired or is not valid yet",
    "tls_certificate": "the certificate does not verify",
    "proxy_auth": "the proxy wants a login the bot does not have",
}

WHAT_TO_DO: dict[str, str] = {
    "app": (
        "Create a new app-level token with the connections:write scope (api.slack.com/apps → your app → "
        "Basic Information → App-Level Tokens), put it in SLACK_APP_TOKEN and restart."
    ),
    "bot": (
        "Reinstall the app to the workspace (api.slack.com/apps → your app → Install App), copy the Bot User "
        "OAuth Token into SLACK_BOT_TOKEN and restart."
    ),
    "link_disabled": (
        "Turn Socket Mode back on (api.slack.com/apps → your app → Socket Mode → Enable Socket Mode) and restart."
    ),
    "tls_untrusted": (
        "If a company proxy or CA signs this traffic, point SSL_CERT_FILE at its CA bundle (PEM) and restart; "
        "see docs/network.md."
    ),
    "tls_wrong_name": (
        "Check the host name in SLACK_API_URL; if a TLS-inspecting proxy made this certificate, it must name the "
        "host it stands in for; then restart; see docs/network.md."
    ),
    "tls_expired": (
        "Check this machine's clock; if it is right, the server (or the TLS-inspecting proxy) must renew its "
        "certificate; then restart; see docs/network.md."
    ),
    "tls_certificate": "Point SSL_CERT_FILE at the CA bundle (PEM) that signs it and restart; see docs/network.md.",
    "proxy_auth": (
        "Put the proxy's user name and password into the URL in the proxy variable named above (the form and "
        "percent-encoding are in docs/network.md) and restart."
    ),
}


# The subset that means a token is dead for every method (missing_scope is about one method only).
DEAD_TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})


def is_fatal(error_code: str | None) -> bool:
    return error_code in FATAL_ERRORS


def fatal_message(error_code: str, token: str, detail: str = "") -> str:
    """One line: what happened and what to do. `token` is "app" or "bot" (never the token itself);
    `detail` says where a network error happened (nonstop.network), in one line without secrets."""
    what = FATAL_ERRORS.get(error_code, error_code)
    if error_code.startswith(("tls_", "proxy_")):
        return f"{detail or 'Network'}: {what} ({error_code}). Retrying cannot fix this. {WHAT_TO_DO[error_code]}"
    todo = WHAT_TO_DO["link_disabled" if error_code == "link_disabled" else token]
    subject = "Slack" if error_code == "link_disabled" else f"Slack rejected the {token} token"
    return f"{subject}: {error_code} ({what}). Retrying cannot fix this. {todo}"


@dataclass
class Backoff:
    """Exponential backoff with full jitter, reset after a healthy connection."""

    base_s: float = 0.5
    cap_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    free_young_drops: int = 3
    failures: int = 0
    young_drops: int = 0

    def failure(self) -> float:
        """Record one more failure in a row; return how long to wait before the next try."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.failures, 30)))
        self.failures += 1
        return self.rng.uniform(0, ceiling)

    def rate_limited(self, retry_after_s: float) -> float:
        """Slack said when to come back: wait exactly that, and count it as a failure for what follows."""
        self.failures += 1
        return max(0.0, retry_after_s)

    def dropped(self, healthy: bool) -> float:
        """A live link dropped; `healthy` if it had lived long enough. Return the wait before replacing it."""
        if healthy:
            self.reset()
            return 0.0
        self.young_drops += 1
        return 0.0 if self.young_drops <= self.free_young_drops else self.failure()

    def reset(self) -> None:
        self.failures = 0
        self.young_drops = 0

    @property
    def in_trouble(self) -> bool:
        return self.failures > 0 or self.young_drops > 0
