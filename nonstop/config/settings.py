"""Settings from the environment, checked before anything touches the network.

Every problem becomes a `ConfigError` whose text is one line naming the variable, what was expected
and where to get it; `app.py` prints it and exits with EX_CONFIG (78). Token values never appear in
these messages.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from nonstop.config.urls import default_ledger_url, parse_ledger_url
from nonstop.errors import ConfigError
from nonstop.net.retry import Schedule
from nonstop.redact import redact_url

DEFAULT_API_URL = "https://slack.com/api/"

_TOKEN_HELP = {
    "SLACK_BOT_TOKEN": (
        "xoxb-",
        "the Bot User OAuth Token (api.slack.com/apps → your app → OAuth & Permissions → Bot User OAuth Token)",
    ),
    "SLACK_APP_TOKEN": (
        "xapp-",
        "an app-level token with the connections:write scope "
        "(api.slack.com/apps → your app → Basic Information → App-Level Tokens)",
    ),
}


# The token values `.env.example` ships with: a copy that was never edited must not reach Slack.
PLACEHOLDER_TOKENS = {"SLACK_BOT_TOKEN": "xoxb-your-bot-token", "SLACK_APP_TOKEN": "xapp-your-app-level-token"}

SETTING_PREFIX = "NONSTOP_"

_log = logging.getLogger("nonstop.config.settings")


@dataclass(frozen=True)
class SupervisorSettings:
    """How the supervisor keeps the link alive. Defaults are the production ones."""

    connections: int = 2
    # Waits between attempts while Slack is unreachable: see nonstop.net.retry.Schedule for why these numbers.
    backoff_base_s: float = 1.0  # the wait during the first minute of trouble
    fast_retry_for_s: float = 60.0  # how long the trouble may last before the wait starts to grow
    backoff_cap_s: float = 30.0  # the longest wait, reached after about five minutes
    healthy_after_s: float = 10.0  # a link that lived this long resets the backoff
    # Every link is pinged every 2.25 s; a ping unanswered for 0.6 s with no other frame since makes the link
    # suspect (so a dead path is suspected 0.6-2.85 s after it died) and its replacement opens at once;
    # 8 s without any frame makes it dead. An idle bot wakes once per ping interval in all (a healthy
    # link's pong cancels its deadline before it fires): the wake, not the ping, is what idle CPU costs
    # (bench/: idle CPU at the stock handler's level; no suspect under a 300-mention burst).
    ping_interval_s: float = 2.25
    pong_timeout_s: float = 0.6  # a ping unanswered this long, nothing else heard: open a replacement
    stale_after_s: float = 8.0  # no inbound byte (pong, ping, hello, envelope) for this long: the link is dead
    connection_limit: int = 10  # Slack's limit of connections per app, spare links included
    # While Slack counts connections this process no longer holds (dead sockets it has not noticed), how
    # often to check whether it still does (one spare link replaced, its hello counted).
    spare_check_s: float = 60.0
    # After a silence, spare links wait until the path has stayed up this long: a spare opened while the path
    # still flaps is one more dead socket in Slack's budget at its next silence (nonstop/links/budget.py).
    spare_calm_s: float = 10.0
    connect_timeout_s: float = 10.0  # apps.connections.open + WebSocket handshake + hello
    drain_timeout_s: float = 10.0
    dedup_ttl_s: float = 900.0  # Slack's last retry comes ~5 min after the first attempt
    # Listeners mostly wait on Slack's Web API; a thread parked on a socket costs memory, not CPU or
    # the GIL, so the event lane is sized for a burst of such waits (bench/: 30 mentions, 2 s replies).
    handler_threads: int = 32  # event listeners running at once (the event lane)
    command_threads: int = 8  # slash command and interaction listeners (their own lane: never queued behind events)
    max_backlog: int = 1000  # events acked and not finished; past it, new events are left for Slack to retry
    ledger_url: str = "memory://"  # `python app.py` keeps a durable one (see load_settings)
    # Replicas on Redis: how long a replica's heartbeat holds. It is the delay before a dead replica's events run
    # elsewhere, so it is short; it is beaten every third of it, so a live replica must miss three beats in a row
    # (a stalled loop, a Redis blip) before another replica would run its events a second time.
    lease_s: float = 10.0
    replica_name: str = ""  # replicas on Redis: this one's name in status and logs ("": host name and pid)
    max_frame_bytes: int = 16 * 1024 * 1024  # a larger frame from Slack ends its link (1009), memory stays bounded
    # Process-wide tuning, off unless asked for: a drop-in handler leaves its host process as it found it.
    # `app.py` owns its process and opts in (see `load_settings`); both are measured in bench/.
    handler_nice: int = 0  # niceness added to handler threads, so the ack loop wins the CPU (Linux; best effort)
    gil_switch_interval_s: float | None = None  # sys.setswitchinterval while running; restored on stop
    # Catch-up (nonstop/catchup/, docs/decisions.md "Catch-up"): mentions Slack never delivered, found in the
    # conversations' history. The window is how far back a scan looks: a bot down for up to an hour (a bad deploy, a
    # host reboot) misses nothing; the ledger remembers mentions at least that long. The period is how often a
    # scan runs while links are live: an incident where Slack drops events is answered within about 2 minutes,
    # well within the 5 minutes of Slack's own last retry, at Tier 3 cost of (conversations + 1) calls a scan.
    catch_up: bool = True
    catch_up_window_s: float = 3600.0
    catch_up_period_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 <= self.handler_nice <= 19:
            raise ValueError("handler_nice must be 0-19")

    @property
    def ledger_ttl_s(self) -> float:
        """How long the ledger remembers a done event: Slack's retries, and catch-up's look-back window."""
        return max(self.dedup_ttl_s, self.catch_up_window_s if self.catch_up else 0.0)

    @property
    def retry_schedule(self) -> Schedule:
        return Schedule(fast_s=self.backoff_base_s, fast_for_s=self.fast_retry_for_s, cap_s=self.backoff_cap_s)


UNSURE_ANSWERS = ("repost", "skip")


@dataclass(frozen=True)
class OutboundSettings:
    """The way out (`nonstop.outbound`): how long an answer may wait, and what to do when unsure."""

    # An answer not delivered within this is given up, loudly. Five minutes: Slack's last retry of an event
    # comes about five minutes after the first try [DOC], and an answer later than that is more puzzling than
    # useful, while it holds its event's place in the backlog.
    reply_deadline_s: float = 300.0
    # A post that may or may not have reached Slack (500 internal_error, a cut answer), where the bot cannot
    # read the conversation to check: "repost" (maybe twice, never lost) or "skip" (maybe never, never twice).
    unsure_answer: str = "repost"

    def __post_init__(self) -> None:
        if self.reply_deadline_s <= 0:
            raise ValueError("reply_deadline_s must be positive")
        if self.unsure_answer not in UNSURE_ANSWERS:
            raise ValueError(f"unsure_answer must be one of {UNSURE_ANSWERS}")


@dataclass(frozen=True)
class Settings:
    bot_token: str
    app_token: str
    api_url: str
    log_level: str
    log_format: str
    health_host: str
    health_port: int
    supervisor: SupervisorSettings
    outbound: OutboundSettings = OutboundSettings()
    warnings: tuple[str, ...] = ()  # one line each, safe to log (e.g. a misspelled NONSTOP_ variable)


def _token(env: Mapping[str, str], name: str) -> str:
    prefix, where = _TOKEN_HELP[name]
    value = env.get(name)
    if value is None or value == "":
        raise ConfigError(f"{name} is not set: expected {where}, starting with '{prefix}'.")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        # python-dotenv strips quotes in .env; `docker --env-file` and systemd's EnvironmentFile= may not.
        raise ConfigError(f"{name} is wrapped in quotes: remove the quotes around the token (expected {where}).")
    if value == PLACEHOLDER_TOKENS[name] or "your-" in value:
        raise ConfigError(
            f"{name} is still the example value from .env.example: replace the placeholder in .env with {where}."
        )
    if value != value.strip() or any(ch.isspace() for ch in value):
        raise ConfigError(f"{name} contains whitespace: expected {where}, starting with '{prefix}', on one line.")
    if not value.startswith(prefix) or len(value) <= len(prefix):
        kind = next((p for p in ("xoxb-", "xoxp-", "xoxa-", "xoxe-", "xapp-") if value.startswith(p)), None)
        if kind is None:
            raise ConfigError(f"{name} does not look like a Slack token: expected {where}, starting with '{prefix}'.")
        raise ConfigError(f"{name} starts with '{kind}': expected {where}, starting with '{prefix}'.")
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number: expected a value from {low:g} to {high:g}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw} is out of range: expected a value from {low:g} to {high:g}.")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _number(env, name, default, low, high)
    if value != int(value):
        raise ConfigError(f"{name}={value:g} is not a whole number: expected {low} to {high}.")
    return int(value)


def _api_url(env: Mapping[str, str]) -> str:
    raw = env.get("SLACK_API_URL", "").strip() or DEFAULT_API_URL
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"SLACK_API_URL={raw!r} is not an http(s) URL: expected the Web API base, e.g. {DEFAULT_API_URL}"
        )
    return raw if raw.endswith("/") else raw + "/"


def _ledger_url(env: Mapping[str, str], *, durable: bool) -> str:
    raw = env.get("NONSTOP_LEDGER", "").strip() or (default_ledger_url(env) if durable else "memory://")
    try:
        parse_ledger_url(raw)
    except ValueError as e:
        raise ConfigError(f"NONSTOP_LEDGER={redact_url(raw)!r} is not a ledger URL: {e}.") from None
    return raw


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    value = raw.upper() if name == "LOG_LEVEL" else raw.lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")
    return value


APP_PROCESS_TUNING = {"handler_nice": 10, "gil_switch_interval_s": 0.0005}
"""What `python app.py`, which owns its whole process, opts into (NONSTOP_HANDLER_NICE and
NONSTOP_GIL_SWITCH_INTERVAL override it; 0 turns either off): a burst of listeners then delays the
ack loop less (bench/: burst ack p99)."""


def supervisor_settings(env: Mapping[str, str], *, own_process: bool = False) -> SupervisorSettings:
    """The supervisor's settings from `NONSTOP_*` in `env`. `own_process`: the caller owns the whole process (`python
    app.py`, a handler's `start()`): then the ledger is durable unless NONSTOP_LEDGER says otherwise, and the
    process-wide tuning is on (`APP_PROCESS_TUNING`); else the ledger is `memory://` unless NONSTOP_LEDGER names
    one, and the process is left as it was found."""
    d = SupervisorSettings()
    tuning = APP_PROCESS_TUNING if own_process else {"handler_nice": 0, "gil_switch_interval_s": 0.0}
    switch = _number(env, "NONSTOP_GIL_SWITCH_INTERVAL", tuning["gil_switch_interval_s"], 0, 0.1)
    ping = _number(env, "NONSTOP_PING_INTERVAL", d.ping_interval_s, 0.1, 5)
    stale = _number(env, "NONSTOP_STALE_AFTER", d.stale_after_s, 0.3, 600)
    return SupervisorSettings(
        connections=_integer(env, "NONSTOP_CONNECTIONS", d.connections, 1, 10),
        backoff_base_s=_number(env, "NONSTOP_BACKOFF_BASE", d.backoff_base_s, 0.01, 60),
        backoff_cap_s=_number(env, "NONSTOP_BACKOFF_CAP", d.backoff_cap_s, 0.05, 3600),
        fast_retry_for_s=_number(env, "NONSTOP_FAST_RETRY_FOR", d.fast_retry_for_s, 0, 3600),
        healthy_after_s=_number(env, "NONSTOP_HEALTHY_AFTER", d.healthy_after_s, 0, 3600),
        ping_interval_s=ping,
        pong_timeout_s=_number(env, "NONSTOP_PONG_TIMEOUT", d.pong_timeout_s, 0.05, 600),
        stale_after_s=stale,
        spare_check_s=_number(env, "NONSTOP_SPARE_CHECK", d.spare_check_s, 0.5, 86400),
        spare_calm_s=_number(env, "NONSTOP_SPARE_CALM", d.spare_calm_s, 0, 3600),
        connect_timeout_s=_number(env, "NONSTOP_CONNECT_TIMEOUT", d.connect_timeout_s, 0.5, 120),
        drain_timeout_s=_number(env, "NONSTOP_DRAIN_TIMEOUT", d.drain_timeout_s, 0, 600),
        dedup_ttl_s=_number(env, "NONSTOP_DEDUP_TTL", d.dedup_ttl_s, 1, 86400),
        handler_threads=_integer(env, "NONSTOP_HANDLER_THREADS", d.handler_threads, 1, 256),
        command_threads=_integer(env, "NONSTOP_COMMAND_THREADS", d.command_threads, 1, 64),
        max_backlog=_integer(env, "NONSTOP_MAX_BACKLOG", d.max_backlog, 1, 100_000),
        ledger_url=_ledger_url(env, durable=own_process),
        lease_s=_number(env, "NONSTOP_LEASE", d.lease_s, 0.3, 60),
        replica_name=str(env.get("NONSTOP_REPLICA_NAME", "") or "").strip()[:100],
        max_frame_bytes=_integer(env, "NONSTOP_MAX_FRAME_BYTES", d.max_frame_bytes, 65536, 256 * 1024 * 1024),
        handler_nice=_integer(env, "NONSTOP_HANDLER_NICE", int(tuning["handler_nice"]), 0, 19),
        gil_switch_interval_s=switch or None,
        catch_up=_choice(env, "NONSTOP_CATCH_UP", "on", ("on", "off")) == "on",
        catch_up_window_s=_number(env, "NONSTOP_CATCH_UP_WINDOW", d.catch_up_window_s, 60, 86400),
        catch_up_period_s=_number(env, "NONSTOP_CATCH_UP_PERIOD", d.catch_up_period_s, 1, 86400),
    )


class _ReadLog(Mapping[str, str]):
    """The environment, remembering which names the settings code asked for (whether set or not)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._env[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return self._env.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def unknown_setting_warnings(env: Mapping[str, str], known: set[str]) -> tuple[str, ...]:
    """One line per `NONSTOP_*` variable that no setting reads, with the closest known name."""
    known_settings = sorted(name for name in known if name.startswith(SETTING_PREFIX))
    lines = []
    for name in sorted(n for n in env if n.startswith(SETTING_PREFIX) and n not in known):
        # Compare what follows the prefix, or every name would look alike.
        suffixes = {known_name[len(SETTING_PREFIX) :]: known_name for known_name in known_settings}
        close = difflib.get_close_matches(name[len(SETTING_PREFIX) :], suffixes, n=1, cutoff=0.6)
        hint = f"did you mean {suffixes[close[0]]}?" if close else f"known: {', '.join(known_settings)}"
        lines.append(f"{name} is not a Nonstop setting and is ignored; {hint}")
    return tuple(lines)


_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def warn_once(warnings: tuple[str, ...]) -> None:
    """Log each of `warnings` at WARNING, once per process: `python app.py` says them before it signs in, and the
    handler it then builds finds the same ones and says nothing more; so does every later handler of a process."""
    for warning in warnings:
        with _WARNED_LOCK:
            if warning in _WARNED:
                continue
            _WARNED.add(warning)
        _log.warning("%s", warning)


def setting_names() -> frozenset[str]:
    """Every environment variable the settings read, taken from the code itself (for docs and checks)."""
    source = _ReadLog({"SLACK_BOT_TOKEN": "xoxb-0-0-names", "SLACK_APP_TOKEN": "xapp-0-A0-0-names"})
    _load(source)
    return frozenset(source.asked)


def handler_settings(
    env: Mapping[str, str] | None = None, *, own_process: bool
) -> tuple[SupervisorSettings, tuple[str, ...]]:
    """What a drop-in handler reads from the environment (`NONSTOP_*` only, no tokens): its settings, checked as
    `load_settings` checks them, and one warning per misspelled `NONSTOP_*` name. Raises `ConfigError`."""
    source = _ReadLog(os.environ if env is None else env)
    sup = supervisor_settings(source, own_process=own_process)
    check_supervisor_settings(sup)
    return sup, unknown_setting_warnings(source, set(setting_names()))


def health_address(env: Mapping[str, str] | None = None) -> tuple[str, int]:
    """HEALTH_HOST and HEALTH_PORT (0: no health server). Raises `ConfigError`."""
    env = os.environ if env is None else env
    return env.get("HEALTH_HOST", "").strip() or "127.0.0.1", _integer(env, "HEALTH_PORT", 8080, 0, 65535)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting. Raises `ConfigError` with a one-line, token-free message."""
    source = _ReadLog(os.environ if env is None else env)
    settings = _load(source)
    warnings = unknown_setting_warnings(source, source.asked)
    return replace(settings, warnings=warnings)


def check_supervisor_settings(sup: SupervisorSettings) -> None:
    """Settings that contradict each other. Raises `ConfigError`, naming the variables."""
    if sup.stale_after_s <= sup.ping_interval_s:
        raise ConfigError(
            f"NONSTOP_STALE_AFTER ({sup.stale_after_s:g}) must be longer than NONSTOP_PING_INTERVAL "
            f"({sup.ping_interval_s:g}): a link is only stale after it missed at least one pong."
        )
    if sup.pong_timeout_s >= sup.stale_after_s:
        raise ConfigError(
            f"NONSTOP_PONG_TIMEOUT ({sup.pong_timeout_s:g}) must be shorter than NONSTOP_STALE_AFTER "
            f"({sup.stale_after_s:g}): a link is suspect before it is dead."
        )
    if sup.backoff_cap_s < sup.backoff_base_s:
        raise ConfigError(
            f"NONSTOP_BACKOFF_CAP ({sup.backoff_cap_s:g}) must not be below NONSTOP_BACKOFF_BASE "
            f"({sup.backoff_base_s:g})."
        )


def _load(env: Mapping[str, str]) -> Settings:
    sup = supervisor_settings(env, own_process=True)
    check_supervisor_settings(sup)
    host, port = health_address(env)
    levels = tuple(name for name in logging.getLevelNamesMapping() if name not in ("NOTSET", "WARN", "FATAL"))
    return Settings(
        bot_token=_token(env, "SLACK_BOT_TOKEN"),
        app_token=_token(env, "SLACK_APP_TOKEN"),
        api_url=_api_url(env),
        log_level=_choice(env, "LOG_LEVEL", "INFO", levels),
        log_format=_choice(env, "LOG_FORMAT", "text", ("text", "json")),
        health_host=host,
        health_port=port,
        supervisor=sup,
        outbound=outbound_settings(env),
    )


def outbound_settings(env: Mapping[str, str] | None = None) -> OutboundSettings:
    """NONSTOP_REPLY_DEADLINE and NONSTOP_UNSURE_ANSWER (the bot's and the drop-in handlers'). Raises `ConfigError`."""
    env = os.environ if env is None else env
    return OutboundSettings(
        reply_deadline_s=60
        * _number(env, "NONSTOP_REPLY_DEADLINE", OutboundSettings.reply_deadline_s / 60, 0.05, 1440),
        unsure_answer=_choice(env, "NONSTOP_UNSURE_ANSWER", OutboundSettings.unsure_answer, UNSURE_ANSWERS),
    )
