"""One benchmark "lane": an in-process Sandbox plus one bot subprocess (stock or Nonstop) pointed at it."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil

from sandbox import ConnectionInfo, Sandbox, SandboxConfig
from sandbox.config import HISTORY_SCOPES, READ_SCOPES
from sandbox.testing import clean_env

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
KINDS = ("stock", "nonstop")
FLOOR = "floor"  # bench/floor_client.py: a bare client that acks at once, then replies (harness calibration)
ASYNC_FLOOR = "asyncio_floor"  # bench/asyncio_floor.py: the same with asyncio alone (the answer rows' yardstick)
# bench/split_eval.py's other bots: Nonstop with patches (bench/nonstop_plain.py), the two-process prototype
NONSTOP_PLAIN = "nonstop-plain"
SPLIT = "split"
# bench/aio_eval.py's bots: one AsyncApp (bench/async_bot.py) on Bolt's AsyncSocketModeHandler or on Nonstop's
STOCK_ASYNC = "stock-async"
NONSTOP_ASYNC = "nonstop-async"
ASYNC_KINDS = (STOCK_ASYNC, NONSTOP_ASYNC)
# bench/aio_answers.py --app: the stock bot's App (bench/stock_bot.py) on Nonstop's SupervisedSocketModeHandler
NONSTOP_DROPIN = "nonstop-dropin"
# bench/run.py --baseline DIR: Nonstop as another checkout has it (`DIR/app.py`), beside this one's
BEFORE = "before"
# Nonstop's default NONSTOP_CONNECTIONS
_TWO_LINKS = ("nonstop", NONSTOP_PLAIN, SPLIT, BEFORE, NONSTOP_ASYNC, NONSTOP_DROPIN)
_baseline: Path | None = None
_history_scopes = False  # bench/run.py --history-scopes: every lane's sandbox grants catch-up's scopes


def use_baseline(checkout: Path) -> None:
    """Run the BEFORE kind from this checkout of the repository (its app.py, its nonstop/ and listeners/)."""
    global _baseline
    if not (checkout / "app.py").is_file() or not (checkout / "nonstop").is_dir():
        raise ValueError(f"{checkout} is not a checkout of this repository (no app.py and nonstop/ in it)")
    _baseline = checkout.resolve()


def baseline() -> Path:
    if _baseline is None:
        raise ValueError(f"the {BEFORE!r} kind needs a baseline checkout (bench/run.py --baseline DIR)")
    return _baseline


def use_history_scopes(on: bool = True) -> None:
    """Grant every lane's bot token the history and read scopes manifest.yml asks for (catch-up's), or not.
    Nonstop turns catch-up on when it sees them; the stock bot has no use for them (it reads no history)."""
    global _history_scopes
    _history_scopes = on


def history_scopes() -> bool:
    return _history_scopes


def with_history_scopes(config: SandboxConfig) -> SandboxConfig:
    """`config` with the *:history and *:read scopes added to its bot token's (each once, order kept)."""
    scopes = tuple(dict.fromkeys((*config.bot_scopes, *HISTORY_SCOPES, *READ_SCOPES)))
    return dataclasses.replace(config, bot_scopes=scopes)


def links_wanted(kind: str) -> int:
    """How many live links a settled bot of this kind holds."""
    return 2 if kind in _TWO_LINKS else 1


# Slack's production timers, except that retries come after 0 / 10 / 30 s instead of 0 / 60 / 300 s so
# that a mixed-fault run can wait for every delivery's final outcome (see docs/benchmark.md), and with the
# Web API's rate limits off, as the rows were measured before the sandbox modelled them.
BENCH_CONFIG = SandboxConfig(retry_delays_s=(0.0, 10.0, 30.0), rate_limits=False)

_REGISTRY: set[Lane] = set()
_REGISTRY_LOCK = threading.Lock()


def stop_lanes(lanes: Iterable[Lane]) -> None:
    """Stop each lane (its bot killed, its sandbox closed), whatever the others do."""
    for lane in list(lanes):
        with contextlib.suppress(Exception):
            lane.stop()


def stop_all() -> None:
    """Kill every bot and stop every sandbox still running (the runner's last-resort cleanup)."""
    with _REGISTRY_LOCK:
        running = list(_REGISTRY)
    stop_lanes(running)


def python() -> str:
    return str(PYTHON) if PYTHON.exists() else sys.executable


def command(kind: str) -> list[str]:
    if kind == "stock":
        return [python(), str(REPO / "bench" / "stock_bot.py")]
    if kind == NONSTOP_DROPIN:
        return [python(), str(REPO / "bench" / "stock_bot.py"), "--dropin"]
    if kind == "nonstop":
        return [python(), str(REPO / "app.py")]
    if kind == FLOOR:
        return [python(), str(REPO / "bench" / "floor_client.py")]
    if kind == ASYNC_FLOOR:
        return [python(), str(REPO / "bench" / "asyncio_floor.py")]
    if kind == NONSTOP_PLAIN:
        return [python(), str(REPO / "bench" / "nonstop_plain.py")]
    if kind == SPLIT:
        return [python(), "-m", "bench.split_prototype"]
    if kind in ASYNC_KINDS:
        return [python(), str(REPO / "bench" / "async_bot.py"), kind.removesuffix("-async")]
    if kind == BEFORE:
        return [python(), str(baseline() / "app.py")]
    raise ValueError(f"unknown bot kind {kind!r}")


def bot_env(sb: Sandbox) -> dict[str, str]:
    """The environment of a bot under test: this sandbox's URL and tokens, production defaults only
    (no NONSTOP_ setting leaks in from the caller's environment), no health server."""
    env = clean_env() | {
        "SLACK_BOT_TOKEN": sb.bot_token,
        "SLACK_APP_TOKEN": sb.app_token,
        "SLACK_API_URL": sb.api_url,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO),
        "HEALTH_PORT": "0",
    }
    return {k: v for k, v in env.items() if not k.startswith("NONSTOP_")}


class Lane:
    """A sandbox and the bot process attached to it. `start()` / `stop()`; always stop in a finally."""

    def __init__(
        self, kind: str, name: str, config: SandboxConfig = BENCH_CONFIG, env: dict[str, str] | None = None
    ) -> None:
        self.kind = kind
        self.name = name
        self.env = dict(env or {})  # on top of the production defaults (e.g. NONSTOP_LEDGER for one row)
        self.sb = Sandbox(with_history_scopes(config) if _history_scopes else config)
        self.proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None
        self.restarts = 0

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Lane:
        with _REGISTRY_LOCK:
            _REGISTRY.add(self)
        self.sb.start()
        self._workdir = tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-")
        self.spawn()
        return self

    def spawn(self) -> None:
        """(Re)start the bot process, in an empty directory so no stray .env is read."""
        self.kill()
        assert self._workdir is not None
        self.log_path = Path(self._workdir.name) / f"bot-{self.restarts}.log"
        env = bot_env(self.sb) | {"LOG_LEVEL": "INFO"} | self.env
        if self.kind == BEFORE:  # its own nonstop/ and listeners/, never this checkout's
            env["PYTHONPATH"] = str(baseline())
        args = [self.sb.api_url, self.sb.app_token, self.sb.bot_token] if self.kind in (FLOOR, ASYNC_FLOOR) else []
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command(self.kind) + args,
                cwd=self._workdir.name,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def workdir(self) -> Path:
        """The bot's working directory: kept across `respawn()`, so a restarted Nonstop finds its ledger."""
        assert self._workdir is not None
        return Path(self._workdir.name)

    def respawn(self) -> None:
        self.restarts += 1
        self.spawn()

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def stop(self) -> None:
        with _REGISTRY_LOCK:
            _REGISTRY.discard(self)
        try:
            self.kill()
        finally:
            try:
                self.sb.stop()
            finally:
                if self._workdir is not None:
                    self._workdir.cleanup()
                    self._workdir = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ps(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-n:]

    # --- connections -----------------------------------------------------------------------------
    def live(self) -> list[ConnectionInfo]:
        """Connections with hello sent, not told to go, not closed (silent ones count until Slack gives up)."""
        return self.sb.connections(live_only=True)

    def wait_live(self, timeout: float) -> list[ConnectionInfo] | None:
        try:
            return self.sb.wait_for_connections(1, timeout=timeout)
        except TimeoutError:
            return None

    def wait_new_live(self, known: set[str], timeout: float) -> ConnectionInfo | None:
        """The first connection not in `known` that got its hello within `timeout` s, or None."""

        def fresh() -> ConnectionInfo | None:
            new = [c for c in self.sb.connections() if c.id not in known and c.hello_at is not None]
            return min(new, key=lambda c: c.hello_at or 0.0) if new else None

        try:
            return self.sb.wait_until(fresh, timeout=timeout, what="a new live connection")
        except TimeoutError:
            return None

    def settle(self, min_age_s: float, timeout: float) -> bool:
        """Wait until every live connection is at least `min_age_s` old and the bot has its full set."""
        want = links_wanted(self.kind)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [c for c in self.live() if c.state == "live"]
            now = time.monotonic()
            if len(live) >= want and all(now - (c.hello_at or now) >= min_age_s for c in live):
                return True
            time.sleep(0.2)
        return False


@contextlib.contextmanager
def lanes(kind: str, count: int, prefix: str) -> Iterator[list[Lane]]:
    """`count` started lanes of one kind; all stopped (bots killed, sandboxes closed) on exit."""
    started: list[Lane] = []
    try:
        for i in range(count):
            lane = Lane(kind, f"{prefix}-{kind}-{i}")
            started.append(lane)
            lane.start()
        yield started
    finally:
        stop_lanes(started)
