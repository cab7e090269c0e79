"""A user's own Bolt app on the drop-in handler, exactly as the README shows it (`my_app.py`, `my_async_app.py`),
with the package installed from a wheel into a fresh virtualenv and run from outside the repository against the
sandbox over 127.0.0.1 (issue 19's acceptance). Nothing is configured but the tokens and SLACK_API_URL, and
HEALTH_PORT where several processes share this machine's 8080.

The apps configure no logging, so what they did is read from the sandbox's records, not from their logs.
"""

from __future__ import annotations

import re
import signal
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxConfig
from sandbox.ports import free_port
from sandbox.records import Delivery
from sandbox.testing import TEST_CONFIG, clean_env
from tests.botprocess import BotProcess, run_bot
from tests.installed import REPO, venv, wheel
from tests.integration.answers import every_one_answered
from tests.redisserver import RedisServer

__all__ = ["venv", "wheel"]  # fixtures

APPS = ("my_app.py", "my_async_app.py")


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # Room for a restart (start, sign in, connect) between an event's first attempt and Slack's retry of it.
    return TEST_CONFIG.__class__(**{**TEST_CONFIG.__dict__, "ack_deadline_s": 6.0})


def readme_app(name: str) -> str:
    """The app of that name as the README's "Use it in your own Bolt app" shows it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [code] = re.findall(rf"```python\n# {re.escape(name)}\n(.*?)```", readme, flags=re.S)
    return code


def app_env(sb: Sandbox, **extra: str) -> dict[str, str]:
    """A user's environment: the tokens and SLACK_API_URL, nothing of Nonstop's (unless `extra` says)."""
    env = {k: v for k, v in clean_env().items() if not k.startswith(("SLACK_", "NONSTOP_", "HEALTH_", "PYTHON"))}
    return (
        env
        | {
            "SLACK_BOT_TOKEN": sb.bot_token,
            "SLACK_APP_TOKEN": sb.app_token,
            "SLACK_API_URL": sb.api_url,
            "HEALTH_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
        | extra
    )


@contextmanager
def user_app(venv: Path, name: str, env: dict[str, str], workdir: Path) -> Iterator[BotProcess]:
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / name
    script.write_text(readme_app(name), encoding="utf-8")
    with run_bot(env, workdir=workdir, command=[str(venv / "bin" / "python"), str(script)]) as bot:
        yield bot


def fresh_links(sb: Sandbox, n: int, old: set[str]) -> set[str]:
    """Wait for `n` links that are live and heard from, none of them in `old`; their ids."""

    def check() -> set[str] | None:
        ids = {c.id for c in sb.connections(live_only=True) if c.state == "live"}
        return ids if len(ids) >= n and not ids & old else None

    return sb.wait_until(check, timeout=30, what=f"{n} fresh live links")


def answers_both(sb: Sandbox) -> None:
    d = sb.mention("ping")
    assert sb.wait_for_message(thread_ts=d.ts).params["text"] == "pong"
    ack = sb.wait_for_ack(sb.slash_command("", command="/hello"))
    assert ack.payload == {"text": "Hello, <@U0HUMAN01>!"}


def acked(sb: Sandbox, ds: list[Delivery], timeout: float = 30) -> None:
    sb.wait_until(lambda: all(sb.delivery(d).acked_at is not None for d in ds), timeout=timeout, what="all acked")


@pytest.mark.parametrize("name", APPS)
def test_the_readme_app_answers_again_after_a_reset_and_after_a_silent_link(
    sandbox: Sandbox, venv: Path, tmp_path: Path, name: str
) -> None:
    with user_app(venv, name, app_env(sandbox), tmp_path / "app") as bot:
        links = fresh_links(sandbox, 2, set())
        answers_both(sandbox)
        sandbox.reset()
        links = fresh_links(sandbox, 2, links)
        answers_both(sandbox)
        sandbox.silence()  # every link half-open: no close, no reset, nothing crosses any more
        fresh_links(sandbox, 2, links)
        answers_both(sandbox)
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(30) == 0, bot.log
    assert (tmp_path / "app" / "nonstop-ledger.sqlite3").exists(), "start(): a durable ledger by default"
    assert "Traceback" not in bot.log, bot.log


def test_three_async_replicas_on_redis_answer_each_mention_once(
    sandbox: Sandbox, venv: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = app_env(sandbox, NONSTOP_LEDGER=redis_server.url)
    with ExitStack() as stack:
        for i in range(3):
            stack.enter_context(user_app(venv, "my_async_app.py", env, tmp_path / f"replica-{i + 1}"))
        sandbox.wait_until(
            lambda: len([c for c in sandbox.connections(live_only=True) if c.state == "live"]) >= 6,
            timeout=30,
            what="two links for each of the three",
        )
        sandbox.lose_first_acks(1 / 3)  # Slack retries those, on any connection of the app
        ds = sandbox.mentions([f"ping {i}" for i in range(30)])
        acked(sandbox, ds, timeout=60)  # the lost ones only when Slack's retry of them was acked
        counts = every_one_answered(sandbox, ds)
        assert [d for d in ds if len(sandbox.delivery(d).attempts) > 1], "some events were sent again"
        assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}


def test_a_sync_app_gets_the_bots_defaults_a_durable_ledger_its_settings_and_the_health_server(
    sandbox: Sandbox, venv: Path, tmp_path: Path
) -> None:
    """SIGKILL with 30 acked and unfinished: the restart answers every one (the default ledger is a file in the
    working directory); NONSTOP_CONNECTIONS is honoured, a misspelled setting warned about, /readyz served."""
    port = free_port()
    env = app_env(sandbox, NONSTOP_CONNECTIONS="3", NONSTOP_DRAIN_TIMEUT="5", HEALTH_PORT=str(port))
    workdir = tmp_path / "app"
    with user_app(venv, "my_app.py", env, workdir) as bot:
        fresh_links(sandbox, 3, set())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as ready:
            assert ready.status == 200
        bot.wait_for_log(r"NONSTOP_DRAIN_TIMEUT is not a Nonstop setting .* did you mean NONSTOP_DRAIN_TIMEOUT\?")
        sandbox.slow_api(2.0, ["chat.postMessage"])  # the listeners are all mid-way when it dies
        ds = [sandbox.mention(f"ping {i}") for i in range(30)]
        acked(sandbox, ds)
        bot.proc.kill()
        bot.proc.wait(10)
    sandbox.slow_api(0)
    with user_app(venv, "my_app.py", env, workdir):
        counts = every_one_answered(sandbox, ds)
    assert len(counts) == 30
