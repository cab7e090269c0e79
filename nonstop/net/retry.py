"""The one home of retry policy: what is worth retrying, and how long to wait before the next try.

- Transient failures (refused, DNS, TLS, timeouts, HTTP 5xx, a link that died young) wait by how long
  the trouble has lasted (`Schedule`): about a second for the first minute, so a short outage ends
  for the bot within a second of Slack's return, then longer and longer, up to 30 s, so a long one
  stays polite.
- A rate limit waits exactly what Slack's `Retry-After` says.
- A live link that drops is replaced at once: Slack was reachable a moment ago. Only links that keep
  dying young (more than `free_young_drops` in a row) fall back to backoff, so a server that accepts
  and then kills every connection never causes a hot loop.
- A link that stayed healthy for a while resets the backoff.
- Errors that no retry can fix are fatal: the caller stops and a human is told what to do.
- The way out (`judge`): one try of a Web API call that answers a user is judged done, refused for good,
  rate limited, not done (try again), or unsure (it may have reached Slack: look before posting again).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPException
from urllib.error import URLError

from slack_sdk.errors import SlackApiError

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
    # The network's (nonstop.net.network): certificates that do not verify, a proxy that refuses the credentials.
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
    `detail` says where a network error happened (nonstop.net.network), in one line without secrets."""
    what = FATAL_ERRORS.get(error_code, error_code)
    if error_code.startswith(("tls_", "proxy_")):
        return f"{detail or 'Network'}: {what} ({error_code}). Retrying cannot fix this. {WHAT_TO_DO[error_code]}"
    todo = WHAT_TO_DO["link_disabled" if error_code == "link_disabled" else token]
    subject = "Slack" if error_code == "link_disabled" else f"Slack rejected the {token} token"
    return f"{subject}: {error_code} ({what}). Retrying cannot fix this. {todo}"


@dataclass(frozen=True)
class Schedule:
    """How long to wait between connection attempts while Slack cannot be reached, by how long it has
    been unreachable. Each number with its reason:

    - `fast_s` = 1 s for the first `fast_for_s` = 60 s. Most outages of Slack's edge or of the bot's own
      network last seconds (outages of `apps.connections.open` of a few seconds); Slack retries an
      unacked event almost at once and then only after a minute, so every second the bot stays away
      after Slack is back costs events. Trying once a second means the bot is back within ~1 s of
      Slack, while costing Slack at most one `apps.connections.open` per second; one gate for the whole
      process keeps it one per second however many connections are wanted. Slack documents the method
      as Tier 1 ("1+ per minute", bursts tolerated) without saying whether failed calls count, so a
      minute of this may draw a 429: its `Retry-After` is then obeyed exactly (`rate_limited`), and the
      schedule can outrun Slack's real limit by one call at most.
    - `small_jitter` = 10 % in that first minute: enough to keep many bots that lost Slack at the same
      instant from knocking in lockstep, small enough that the wait never exceeds ~1.1 s.
    - after the first minute the wait grows by `growth` = 10 % of the time beyond it, up to `cap_s`
      = 30 s. A long outage is unlikely to end in the next second, so asking every second is impolite;
      waiting a tenth of the outage's age keeps the extra downtime after Slack returns near 10 % of the
      outage (6 s after a two-minute one) and reaches the cap after about five minutes.
    - `late_jitter` = 25 % beyond the first minute: thousands of clients that lost a region together
      spread over a quarter of the wait, so their retries do not arrive as one wave.
    """

    fast_s: float = 1.0
    fast_for_s: float = 60.0
    cap_s: float = 30.0
    growth: float = 0.1
    small_jitter: float = 0.1
    late_jitter: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.fast_s <= self.cap_s:
            raise ValueError("fast_s must be above 0 and not above cap_s")

    def wait(self, outage_s: float, rng: random.Random) -> float:
        """The wait before the next attempt once Slack has been unreachable for `outage_s`."""
        if outage_s < self.fast_for_s:
            nominal, jitter = self.fast_s, self.small_jitter
        else:
            nominal, jitter = self.fast_s + self.growth * (outage_s - self.fast_for_s), self.late_jitter
        return min(self.cap_s, nominal * rng.uniform(1 - jitter, 1 + jitter))


@dataclass
class Backoff:
    """The wait before the next attempt, from the `Schedule` and how long the trouble has lasted.

    The outage's age runs from the first failure after the last healthy link, so a server that flaps
    (accepts, then dies at once) is treated as one long outage and is asked ever more politely.
    """

    schedule: Schedule = field(default_factory=Schedule)
    rng: random.Random = field(default_factory=random.Random)
    free_young_drops: int = 3
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    young_drops: int = 0
    trouble_since: float | None = None

    def outage_s(self) -> float:
        return 0.0 if self.trouble_since is None else self.clock() - self.trouble_since

    def _in_trouble_now(self) -> None:
        if self.trouble_since is None:
            self.trouble_since = self.clock()

    def failure(self) -> float:
        """Record one more failure in a row; return how long to wait before the next try."""
        self._in_trouble_now()
        self.failures += 1
        return self.schedule.wait(self.outage_s(), self.rng)

    def rate_limited(self, retry_after_s: float) -> float:
        """Slack said when to come back: wait exactly that, and count it as a failure for what follows."""
        self._in_trouble_now()
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
        self.trouble_since = None

    @property
    def in_trouble(self) -> bool:
        return self.failures > 0 or self.young_drops > 0


# --- The way out: what to do after one try of a Web API call (nonstop.outbound) ---------------------

OK = "ok"
FINAL = "final"  # Slack refused the call for good (channel_not_found, msg_too_long, …): the caller hears it
RATELIMITED = "ratelimited"  # HTTP 429: wait exactly Retry-After, then the same call again
RETRY = "retry"  # it did not happen (503, a refused connection, …): the same call again after a wait
UNSURE = "unsure"  # it may have happened (500 internal_error, a cut or timed-out answer): look, or choose

# Slack's own words for these two: "It's possible some aspect of the operation succeeded before the error
# was raised" [DOC: every method's error list; notes §10].
UNSURE_ERRORS = frozenset({"internal_error", "fatal_error"})
# Errors in a 200 answer that say the call was not carried out: "The service is temporarily unavailable",
# and "the POST data was either missing or truncated" [DOC: every method's error list].
NOT_DONE_ERRORS = frozenset({"service_unavailable", "request_timeout"})
DEFAULT_RETRY_AFTER_S = 1.0
"""A 429 without a usable Retry-After [INF: Slack always sends one; chat.postMessage's is about 1 s]."""


@dataclass(frozen=True)
class Outcome:
    """One try of a Web API call, judged: `kind` is one of OK, FINAL, RATELIMITED, RETRY, UNSURE; `cause` a
    bounded label for metrics and logs (ratelimited, server_error, network, timeout, or a Slack error code
    for FINAL); `retry_after_s` is Slack's Retry-After for RATELIMITED."""

    kind: str
    cause: str = ""
    retry_after_s: float = 0.0


def retry_after_of(headers: Mapping[str, object] | None) -> float:
    """Retry-After in seconds from a 429's headers (any case), or `DEFAULT_RETRY_AFTER_S`."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(str(raw).strip()))
            except ValueError:
                break
    return DEFAULT_RETRY_AFTER_S


def judge(error: BaseException | None) -> Outcome:
    """What one try of a Web API call (slack_sdk's urllib client, no retry handlers) tells about the call.

    urllib wraps in `URLError` only what fails before the request is fully written (connecting, TLS, the
    proxy, sending), so the call did not happen [SDK: urllib.request.AbstractHTTPHandler.do_open]; an error
    while reading the answer (a reset, EOF, a read timeout) comes unwrapped, after Slack had the request.
    An HTTP 503 is taken to mean "not done" [INF: Slack's `service_unavailable`]; every other 5xx may come
    from a proxy or load balancer after Slack did the work, so it is unsure [INF].
    """
    if error is None:
        return Outcome(OK)
    if isinstance(error, SlackApiError):
        response = error.response
        status = getattr(response, "status_code", 200)
        data = getattr(response, "data", response)
        data = data if isinstance(data, dict) else {}
        code = str(data.get("error") or "")
        if status == 429 or code in ("ratelimited", "rate_limited"):
            return Outcome(RATELIMITED, "ratelimited", retry_after_of(getattr(response, "headers", None)))
        if code in UNSURE_ERRORS:
            return Outcome(UNSURE, "server_error")
        if code in NOT_DONE_ERRORS or status == 503:
            return Outcome(RETRY, "server_error")
        if status >= 500:
            return Outcome(UNSURE, "server_error")
        return Outcome(FINAL, code or f"http_{status}")
    if isinstance(error, URLError):
        reason = getattr(error, "reason", None)
        return Outcome(RETRY, "timeout" if isinstance(reason, TimeoutError) else "network")
    aiohttp = _aiohttp_outcome(error)
    if aiohttp is not None:
        return aiohttp
    if isinstance(error, TimeoutError):
        return Outcome(UNSURE, "timeout")
    if isinstance(error, OSError | HTTPException):  # reset, EOF, a bad status line: after the request was sent
        return Outcome(UNSURE, "network")
    return Outcome(FINAL, "error")


def _aiohttp_outcome(error: BaseException) -> Outcome | None:
    """The same judgement for slack_sdk's async client (aiohttp, by class name: no import): aiohttp raises
    `ClientConnectorError` (a refused connection, DNS, TLS, a proxy) and `ConnectionTimeoutError` only while
    connecting, before the request is written [SDK: aiohttp.connector]; any other connection error (a reset, the
    server gone, a broken answer) may come after Slack had it. Timeouts while waiting are left to the rule below."""
    if not type(error).__module__.startswith("aiohttp"):
        return None
    names = {cls.__name__ for cls in type(error).__mro__}
    if "ConnectionTimeoutError" in names:
        return Outcome(RETRY, "timeout")
    if "ClientConnectorError" in names:
        return Outcome(RETRY, "network")
    if "TimeoutError" not in names and names & {"ClientConnectionError", "ClientPayloadError"}:
        return Outcome(UNSURE, "network")
    return None


CREATES = frozenset(
    {
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.meMessage",
        "chat.scheduleMessage",
        "views.open",
        "views.push",
        "files.upload",
        "files.completeUploadExternal",
    }
)
"""Methods whose second try makes a second thing (a message, a modal, a file): after an unsure try they are
looked up (a marked post), or posted again or not as NONSTOP_UNSURE_ANSWER says. Any other method is safe to
send again (an update, a delete, a reaction, a publish, a read) [INF: Slack documents no idempotency keys]."""

SETTLED_BY: dict[str, str] = {
    "reactions.add": "already_reacted",
    "reactions.remove": "no_reaction",
    "chat.delete": "message_not_found",
}
"""A repeated try that gets this error proves the earlier, unsure try was delivered [DOC: the methods' errors]."""
