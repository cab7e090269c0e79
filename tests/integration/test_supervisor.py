"""The supervisor's promises (issue #4, items 1-12), each checked on the real bot process against the sandbox.

Timers are shortened through the bot's own settings (see `tests.botprocess.FAST`); the behaviour under
test is the production code path. Waits are deadlines on observed events, never bare sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import time

import psutil
import pytest

from sandbox import Sandbox
from sandbox.testing import raw_connect
from tests.botprocess import BotProcess, bot_env, run_bot


def live(sb: Sandbox) -> list[str]:
    return [c.id for c in sb.connections(live_only=True) if c.state == "live"]


def wait_live(sb: Sandbox, n: int, *, excluding: tuple[str, ...] = (), timeout: float = 10) -> list[str]:
    def check() -> list[str] | None:
        ids = [i for i in live(sb) if i not in excluding]
        return ids if len(ids) >= n else None

    return sb.wait_until(check, timeout=timeout, what=f"{n} live connection(s) other than {excluding}")


def answered_once(sb: Sandbox, bot: BotProcess, d: object, timeout: float = 10) -> None:
    """The mention got exactly one reply, checked once a second reply could no longer be on its way.

    The bot acks every attempt it receives, then either answers it or logs it as a suppressed
    duplicate. So once Slack's delivery has settled and each acked attempt is accounted for (a reply
    or a suppression line), a double reply would already be visible."""
    sb.wait_for_message(thread_ts=d.ts, timeout=timeout)  # type: ignore[attr-defined]
    sb.wait_until(lambda: sb.delivery(d).outcome in ("acked", "exhausted"), timeout=timeout, what="delivery settled")
    event_id = sb.delivery(d).event_id

    def accounted() -> bool:
        r = sb.delivery(d)
        received = (1 if r.acked_at is not None else 0) + r.duplicate_acks + r.acks_lost
        suppressed = len(re.findall(rf"suppressed a duplicate delivery of {event_id}\b", bot.log))
        return len(sb.replies_to(d)) + suppressed >= received  # type: ignore[arg-type]

    sb.wait_until(accounted, timeout=timeout, what="every attempt the bot received answered or suppressed")
    assert len(sb.replies_to(d)) == 1, [c.params.get("text") for c in sb.replies_to(d)]  # type: ignore[arg-type]


# 1 -------------------------------------------------------------------------------------------------


def test_reset_without_close_frame_reconnects_at_once_and_loses_nothing(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        before = wait_live(sandbox, 2)
        sandbox.reset()  # every link: TCP RST, no close frame (the "1006" morning)
        d = sandbox.mention("ping")  # sent while the bot has no connection at all
        wait_live(sandbox, 2, excluding=tuple(before))
        answered_once(sandbox, bot, d)
        lines = bot.wait_for_log(r"dropped after .*1006 abnormal closure.*reconnecting", count=2)
        assert any("reconnecting now" in line for line in lines), lines


# 2 -------------------------------------------------------------------------------------------------


def bot_sockets(sb: Sandbox, bot: BotProcess) -> list[str]:
    """The bot's established sockets to the sandbox's WebSocket port, as "ip:port" of the bot's end."""
    return [
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in psutil.Process(bot.pid).net_connections("tcp")
        if c.raddr and c.raddr.port == sb.ws_port and c.status == psutil.CONN_ESTABLISHED
    ]


def test_half_open_link_is_noticed_and_replaced(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_SPARE_CHECK="1")) as bot:
        first, _ = wait_live(sandbox, 2)
        silent_peer = next(c.peer for c in sandbox.connections() if c.id == first)
        sandbox.silence(first)  # no pong, no data, no close: only the bot's own watchdog can tell
        bot.wait_for_log(r"half-open link", timeout=10)
        wait_live(sandbox, 2, excluding=(first,), timeout=10)
        # A silent path carries no FIN/RST either, so only the bot's side can show the socket was let go.
        sandbox.wait_until(
            lambda: silent_peer not in bot_sockets(sandbox, bot), what="the bot drops the silent socket, not leak it"
        )
        # Spares are held while "Slack" still counts the dead socket (silent_link_alive_s); once a fresh
        # hello shows it does not, the bot is back to its two connections.
        bot.wait_for_log(r"Slack counts no dead connection any more", timeout=30)
        sandbox.wait_until(lambda: len(bot_sockets(sandbox, bot)) == 2, what="spares closed", timeout=10)


# 3 -------------------------------------------------------------------------------------------------


def test_redundant_connections_keep_the_bot_listening_while_one_is_replaced(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="3")) as bot:
        ids = wait_live(sandbox, 3)
        assert len(ids) == 3
        sandbox.silence(ids[0])  # dead for ~2.5 s before the bot can know
        replies = [sandbox.mention(f"ping {i}") for i in range(6)]  # some land on the silent link first
        for d in replies:
            answered_once(sandbox, bot, d)
        bot.wait_for_log(r"half-open")
        wait_live(sandbox, 3, excluding=(ids[0],))


def test_links_are_replaced_one_at_a_time(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="3")) as _:
        old = wait_live(sandbox, 3)
        sandbox.reset()  # all three die together
        new_ids = wait_live(sandbox, 3, excluding=tuple(old))
        new = sorted((c for c in sandbox.connections() if c.id in new_ids), key=lambda c: c.opened_at)
        for earlier, later in itertools.pairwise(new):
            assert earlier.hello_at is not None
            assert later.opened_at >= earlier.hello_at, "one connection attempt at a time, never a stampede"


# 4 -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["refresh_requested", "warning"])
def test_refresh_is_make_before_break(sandbox: Sandbox, reason: str) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        old, _ = wait_live(sandbox, 2)
        sandbox.disconnect(reason, old)
        bot.wait_for_log(r"make before break")
        sandbox.wait_until(
            lambda: next(c for c in sandbox.connections() if c.id == old).closed_at is not None,
            timeout=10,
            what="old connection closed",
        )
        old_info = next(c for c in sandbox.connections() if c.id == old)
        newer = [c for c in sandbox.connections() if c.opened_at > old_info.disconnect_at and c.hello_at]
        assert newer, "a replacement connection must have said hello"
        assert min(c.hello_at for c in newer) < old_info.closed_at, "new link must be live before the old one goes"
        d = sandbox.mention("ping")
        answered_once(sandbox, bot, d)


# 5 -------------------------------------------------------------------------------------------------


def test_lost_ack_retry_is_acked_but_handled_once(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        wait_live(sandbox, 2)
        sandbox.lose_acks(1)
        d = sandbox.mention("ping")
        sandbox.wait_until(lambda: len(sandbox.delivery(d).attempts) >= 2, timeout=10, what="Slack's retry")
        answered_once(sandbox, bot, d)
        bot.wait_for_log(r"suppressed a duplicate delivery of " + re.escape(str(d.event_id)))


def test_retry_of_an_event_never_seen_is_handled(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="1", NONSTOP_STALE_AFTER="30", NONSTOP_PING_INTERVAL="5")) as bot:
        (only,) = wait_live(sandbox, 1)
        sandbox.silence(only)  # the first attempt is swallowed by the silent link
        d = sandbox.mention("ping")
        sandbox.reset(only)  # now the bot sees the drop and reconnects; Slack retries on the new link
        answered_once(sandbox, bot, d, timeout=15)
        assert sandbox.delivery(d).attempts[0].connection_id == only


# 6 -------------------------------------------------------------------------------------------------


def test_outage_never_gives_up_and_comes_back_within_one_cap(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        wait_live(sandbox, 2)
        sandbox.outage(4, mode="refused", drop_connections=True)
        bot.wait_for_log(r"could not get a Socket Mode URL .*retrying in", count=2)
        sandbox.wait_until(lambda: not sandbox.outage_active(), timeout=10, what="outage over")
        over_at = time.monotonic()
        wait_live(sandbox, 2, timeout=10)
        # Slack's side: the first ticket asked for after the outage. The backoff cap is 2 s in these tests, so
        # however long the outage, the bot asks again within one cap of its end (plus this machine's lag).
        first = min(c.at for c in sandbox.calls("apps.connections.open") if c.at >= over_at)
        assert first - over_at <= 2.0 + 1.0, f"asked {first - over_at:.2f} s after the outage ended"


def test_rate_limit_waits_exactly_retry_after(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="1")) as bot:
        wait_live(sandbox, 1)
        sandbox.outage(2.5, mode="ratelimited", retry_after=2, drop_connections=True)
        bot.wait_for_log(r"retrying in exactly 2\.0 s as asked")
        wait_live(sandbox, 1, timeout=10)
        opens = list(sandbox.calls("apps.connections.open"))[1:]
        limited = [c for c in opens if c.status == 429]
        assert limited, "the bot must have met the rate limit"
        after = opens[opens.index(limited[0]) + 1]
        assert after.at - limited[0].at >= 2.0, "came back before Retry-After"


# 7 -------------------------------------------------------------------------------------------------


def test_revoked_app_token_is_loud_and_final(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        wait_live(sandbox, 2)
        opens_before = len(sandbox.calls("apps.connections.open"))
        sandbox.revoke("app")
        assert bot.wait_exit(timeout=10) == 78
        assert len(sandbox.calls("apps.connections.open")) - opens_before <= 3
        fatal = [line for line in bot.log.splitlines() if "CRITICAL" in line]
        assert len(fatal) == 1, fatal
        assert "token_revoked" in fatal[0]
        assert "App-Level Tokens" in fatal[0]


def test_bot_token_revoked_while_running_is_loud_and_final(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        wait_live(sandbox, 2)
        sandbox.revoke("bot")  # the bot can still hear, but can no longer say anything
        sandbox.mention("ping")
        assert bot.wait_exit(timeout=10) == 78
        fatal = [line for line in bot.log.splitlines() if "CRITICAL" in line]
        assert len(fatal) == 1, bot.log
        assert "token_revoked" in fatal[0]
        assert "SLACK_BOT_TOKEN" in fatal[0]


def test_socket_mode_disabled_is_loud_and_final(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        wait_live(sandbox, 2)
        sandbox.disable_socket_mode()
        assert bot.wait_exit(timeout=10) == 78
        assert "link_disabled" in bot.log
        assert "Enable Socket Mode" in bot.log


# 8 -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wedge", ["stall_handshake", "withhold_hello"])
def test_wedged_connect_is_abandoned_and_retried(sandbox: Sandbox, wedge: str) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="1")) as bot:
        (first,) = wait_live(sandbox, 1)
        getattr(sandbox, wedge)(True)
        sandbox.reset(first)
        bot.wait_for_log(r"connection failed \(connect_timeout", timeout=10)
        getattr(sandbox, wedge)(False)
        wait_live(sandbox, 1, excluding=(first,), timeout=10)
        answered_once(sandbox, bot, sandbox.mention("ping"))


# 9 -------------------------------------------------------------------------------------------------


def test_sigterm_drains_in_flight_work_then_exits_zero(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        wait_live(sandbox, 2)
        sandbox.slow_api(2.0, methods=["chat.postMessage"])  # the reply is in flight for 2 s
        d = sandbox.mention("ping")
        sandbox.wait_until(lambda: sandbox.calls("chat.postMessage"), timeout=10, what="reply started")
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(timeout=15) == 0
        replies = sandbox.replies_to(d)
        assert replies, "the in-flight reply must finish"
        assert replies[0].status == 200
        assert "stopping gracefully" in bot.log


def test_drain_is_bounded_by_its_timeout(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_DRAIN_TIMEOUT="1")) as bot:
        wait_live(sandbox, 2)
        sandbox.slow_api(60.0, methods=["chat.postMessage"])  # a handler that will not finish in time
        sandbox.mention("ping")
        sandbox.wait_until(lambda: sandbox.calls("chat.postMessage"), timeout=10, what="reply started")
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(timeout=10) == 0
        assert "did not finish within 1.0 s" in bot.log


def test_second_signal_exits_at_once(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_DRAIN_TIMEOUT="60")) as bot:
        wait_live(sandbox, 2)
        sandbox.slow_api(30.0, methods=["chat.postMessage"])
        sandbox.mention("ping")
        sandbox.wait_until(lambda: sandbox.calls("chat.postMessage"), timeout=10, what="reply started")
        bot.signal(signal.SIGTERM)
        bot.wait_for_log(r"stopping gracefully")
        bot.signal(signal.SIGTERM)
        assert bot.wait_exit(timeout=5) != 0


# 10 ------------------------------------------------------------------------------------------------


def test_no_thread_or_memory_growth_over_100_reconnects(sandbox: Sandbox) -> None:
    env = bot_env(sandbox, NONSTOP_CONNECTIONS="1", NONSTOP_HEALTHY_AFTER="0")
    with run_bot(env) as bot:
        proc = psutil.Process(bot.pid)
        current = wait_live(sandbox, 1)[0]

        def cycle(n: int) -> None:
            nonlocal current
            for _ in range(n):
                sandbox.reset(current)
                current = wait_live(sandbox, 1, excluding=(current,))[0]

        cycle(20)  # warm up pools and caches
        threads, rss = proc.num_threads(), proc.memory_info().rss
        cycle(100)
        assert proc.num_threads() <= threads + 2
        assert proc.memory_info().rss < rss + 8 * 1024 * 1024


def test_no_busy_loop_while_slack_is_unreachable(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        wait_live(sandbox, 2)
        proc = psutil.Process(bot.pid)
        sandbox.outage(8, mode="refused", drop_connections=True)
        bot.wait_for_log(r"could not get a Socket Mode URL")
        cpu_before = proc.cpu_times()
        started = time.monotonic()
        # A window of three more failed attempts (at least three backoff waits), however long it takes.
        attempts = len(bot.wait_for_log(r"could not get a Socket Mode URL"))
        bot.wait_for_log(r"could not get a Socket Mode URL", count=attempts + 3, timeout=30)
        cpu = proc.cpu_times()
        used = (cpu.user + cpu.system) - (cpu_before.user + cpu_before.system)
        assert used / (time.monotonic() - started) < 0.2, f"{used:.2f} s of CPU while waiting out the outage"


def test_too_many_websockets_backs_off_instead_of_storming(sandbox: Sandbox) -> None:
    with contextlib.ExitStack() as squatters:
        # Another deployment of the same app holds 8 of Slack's 10 slots: our third link would be the 11th.
        for _ in range(8):
            squatters.enter_context(raw_connect(sandbox))
        with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="3")) as bot:
            lines = bot.wait_for_log(r"too_many_websockets.*retrying in", count=4, timeout=30)
            # Every refusal is followed by a backoff wait, never by an immediate retry (no storm).
            assert all(re.search(r"retrying in [\d.]+ s", line) for line in lines), lines
            assert "reconnecting now" not in "".join(lines)
            assert bot.proc.poll() is None, "too_many_websockets is not fatal"


def test_malformed_frames_are_logged_and_lose_nothing(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="1")) as bot:
        (only,) = wait_live(sandbox, 1)
        for garbage in (
            "not json at all",
            "[1, 2, 3]",
            b"\x00\x01binary",
            '{"type": "events_api", "envelope_id": "E-bad"}',
            '{"type": "events_api", "envelope_id": "E-str", "payload": "text"}',
            '{"type": "events_api", "envelope_id": "E-list", "payload": [1]}',
            '{"type": "slash_commands", "envelope_id": "E-num", "payload": 7}',
        ):
            sandbox.send_raw(garbage, only)
        for envelope_id in ("E-str", "E-list", "E-num"):
            bot.wait_for_log(rf"acked malformed envelope {envelope_id} ")
            sandbox.wait_until(
                lambda e=envelope_id: any(
                    f"ack for unknown envelope {e}" in m for c in sandbox.connections() for m in c.other_messages
                ),
                what=f"the ack of {envelope_id} at the sandbox",
            )
        bot.wait_for_log(r"ignored a text frame of 15 characters that is not JSON")
        bot.wait_for_log(r"ignored a JSON frame of 9 characters that is a list")
        bot.wait_for_log(r"ignored a binary frame of 8 bytes")
        assert "not json at all" not in bot.log, "a bad frame is described, never quoted"
        answered_once(sandbox, bot, sandbox.mention("ping"))
        acked = [m for c in sandbox.connections() for m in c.other_messages]
        assert not any("E-bad" in m for m in acked), "a type and no payload is no envelope: never acked"
        assert live(sandbox) == [only], "garbage must not cost the connection"
        assert "Traceback" not in bot.log


# 11 ------------------------------------------------------------------------------------------------


def test_every_drop_is_explained_once_and_no_token_is_logged(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        first, second = wait_live(sandbox, 2)
        sandbox.close(1001, "going away", first)
        line = bot.wait_for_log(r"connection #\d dropped")[0]
        assert "1001 going away" in line
        assert "reconnecting" in line
        sandbox.reset(second)
        line = bot.wait_for_log(r"connection #\d dropped", count=2)[1]
        assert "1006 abnormal closure" in line
        assert re.search(r"dropped after [\d.]+ s", line), "the connection's age belongs in the line"
        wait_live(sandbox, 2, excluding=(first, second))
        assert sandbox.bot_token not in bot.log
        assert sandbox.app_token not in bot.log
        assert "ticket=" not in bot.log or "ticket=…redacted" in bot.log


# 12 ------------------------------------------------------------------------------------------------


def test_status_shows_the_supervisors_real_state(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        first, _ = wait_live(sandbox, 2)
        sandbox.reset(first)
        wait_live(sandbox, 2, excluding=(first,))
        sandbox.lose_acks(1)
        dup = sandbox.mention("ping")
        answered_once(sandbox, bot, dup)
        d = sandbox.mention("status")
        text = sandbox.wait_for_message(thread_ts=d.ts).params["text"]
        assert "2 of 2" in text
        assert "reset" in text.lower()
        assert "1006" in text
        ack = sandbox.wait_for_ack(sandbox.slash_command("status"))
        assert ack.payload
        assert "2 of 2" in ack.payload.get("text", "")


def test_debug_logging_never_shows_a_token_or_ticket(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, LOG_LEVEL="DEBUG")) as bot:
        wait_live(sandbox, 2)
        d = sandbox.mention("ping")
        sandbox.wait_for_message(thread_ts=d.ts)
        sandbox.wait_for_ack(sandbox.slash_command("status"))
        sandbox.reset()
        wait_live(sandbox, 2, timeout=10)
        bot.wait_for_log(r"connected in", count=4)
        tickets = [c.ticket for c in sandbox.connections() if c.ticket]
        assert tickets
        for secret in (sandbox.bot_token, sandbox.app_token, *tickets):
            assert secret not in bot.log


def test_a_frame_above_the_size_cap_ends_its_link_with_one_clear_line(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox, NONSTOP_CONNECTIONS="1", NONSTOP_MAX_FRAME_BYTES="65536")) as bot:
        (only,) = wait_live(sandbox, 1)
        sandbox.send_raw(
            '{"type": "events_api", "envelope_id": "E-big", "payload": {"x": "' + "a" * 70000 + '"}}', only
        )
        line = bot.wait_for_log(r"larger than the cap of 65536 bytes")[0]
        assert "NONSTOP_MAX_FRAME_BYTES" in line
        wait_live(sandbox, 1, excluding=(only,))
        answered_once(sandbox, bot, sandbox.mention("ping"))
        assert "Traceback" not in bot.log
