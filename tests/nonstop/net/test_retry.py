from __future__ import annotations

import asyncio
import random
from http.client import RemoteDisconnected
from urllib.error import URLError

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from nonstop.net.retry import (
    DEFAULT_RETRY_AFTER_S,
    FATAL_ERRORS,
    FINAL,
    OK,
    RATELIMITED,
    RETRY,
    UNSURE,
    Backoff,
    Schedule,
    fatal_message,
    is_fatal,
    judge,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backoff(seed: int = 7, schedule: Schedule | None = None) -> tuple[Backoff, Clock]:
    clock = Clock()
    return Backoff(schedule or Schedule(), random.Random(seed), clock=clock), clock


def test_first_minute_of_an_outage_waits_about_a_second_each_try() -> None:
    b, clock = backoff()
    waits = []
    while clock.now < 1059:  # an attempt, a failure, the wait, the next attempt ...
        waits.append(b.failure())
        clock.now += waits[-1]
    assert all(0.9 <= w <= 1.1 for w in waits), waits
    assert len(waits) >= 54, "about one attempt per second, so the bot is back within ~1 s of Slack"
    assert len(set(waits)) > 1, "jittered: bots that lost Slack together do not knock in lockstep"


def test_the_wait_grows_after_the_first_minute_up_to_the_cap() -> None:
    b, clock = backoff()
    b.failure()
    seen: dict[int, float] = {}
    for minute in (1, 2, 4, 6, 30):
        clock.now = 1000 + 60 * minute
        seen[minute] = max(b.failure() for _ in range(50))
    assert seen[1] <= 1.25
    assert 5 <= seen[2] <= 9, seen  # 1 s + 10 % of the 60 s beyond the first minute, jittered
    assert seen[4] > seen[2]
    assert seen[6] == seen[30] == 30.0, seen
    assert all(b.failure() <= 30.0 for _ in range(100))


def test_rate_limit_waits_exactly_retry_after() -> None:
    b, clock = backoff()
    clock.now += 500  # whatever the schedule would say, Retry-After rules
    assert b.rate_limited(30.0) == 30.0
    assert b.rate_limited(0.5) == 0.5
    assert b.in_trouble


def test_a_healthy_link_ends_the_outage_so_the_next_one_starts_fast() -> None:
    b, clock = backoff()
    b.failure()
    clock.now += 600
    assert b.failure() > 20
    assert b.dropped(healthy=True) == 0.0
    assert not b.in_trouble
    assert b.failure() <= 1.1


def test_links_that_keep_dying_young_fall_back_to_the_schedule() -> None:
    b, clock = backoff(seed=3)
    assert [b.dropped(healthy=False) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert 0.9 <= b.dropped(healthy=False) <= 1.1
    clock.now += 400  # a server that accepts and kills every link for minutes is one long outage
    assert b.dropped(healthy=False) > 20


def test_schedule_numbers_come_from_settings() -> None:
    b, clock = backoff(schedule=Schedule(fast_s=0.2, fast_for_s=5.0, cap_s=2.0))
    assert 0.18 <= b.failure() <= 0.22
    clock.now += 3600
    assert b.failure() == 2.0
    with pytest.raises(ValueError, match="fast_s"):
        Schedule(fast_s=5.0, cap_s=1.0)


@pytest.mark.parametrize("code", sorted(FATAL_ERRORS))
def test_fatal_messages_say_what_to_do_without_any_token(code: str) -> None:
    assert is_fatal(code)
    text = fatal_message(code, "app")
    assert code in text
    assert "restart" in text
    assert "xapp-" not in text or "must start with xapp-" in text


@pytest.mark.parametrize("code", ["ratelimited", "internal_error", "http_503", "network", "too_many_websockets"])
def test_transient_errors_are_not_fatal(code: str) -> None:
    assert not is_fatal(code)


# --- judge: what one try of a Web API call means (the answer path) -----------------------------------


def api_error(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> SlackApiError:
    response = SlackResponse(
        client=None, http_verb="POST", api_url="x", req_args={}, data=body, headers=headers or {}, status_code=status
    )
    return SlackApiError("failed", response)


@pytest.mark.parametrize(
    ("error", "kind", "cause"),
    [
        (None, OK, ""),
        (api_error(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"}), RATELIMITED, "ratelimited"),
        (api_error(200, {"ok": False, "error": "channel_not_found"}), FINAL, "channel_not_found"),
        (api_error(200, {"ok": False, "error": "msg_too_long"}), FINAL, "msg_too_long"),
        (api_error(200, {"ok": False, "error": "invalid_auth"}), FINAL, "invalid_auth"),
        (api_error(503, {"ok": False, "error": "service_unavailable"}), RETRY, "server_error"),
        (api_error(200, {"ok": False, "error": "request_timeout"}), RETRY, "server_error"),
        (api_error(500, {"ok": False, "error": "internal_error"}), UNSURE, "server_error"),
        (api_error(200, {"ok": False, "error": "fatal_error"}), UNSURE, "server_error"),
        (api_error(502, {"ok": False, "error": "bad gateway"}), UNSURE, "server_error"),
        (URLError(ConnectionRefusedError(111, "refused")), RETRY, "network"),
        (URLError(TimeoutError("connect timed out")), RETRY, "timeout"),
        (TimeoutError("read timed out"), UNSURE, "timeout"),
        (RemoteDisconnected("closed"), UNSURE, "network"),
        (ConnectionResetError(104, "reset"), UNSURE, "network"),
        (ValueError("bad arguments"), FINAL, "error"),
    ],
)
def test_judge_tells_done_refused_limited_not_done_and_unsure(error, kind, cause) -> None:
    outcome = judge(error)
    assert (outcome.kind, outcome.cause) == (kind, cause)


def test_judge_reads_retry_after_in_any_case_and_falls_back_when_it_is_missing() -> None:
    assert judge(api_error(429, {"ok": False}, {"retry-after": "30"})).retry_after_s == 30.0
    assert judge(api_error(429, {"ok": False}, {})).retry_after_s == DEFAULT_RETRY_AFTER_S
    assert judge(api_error(429, {"ok": False}, {"Retry-After": "soon"})).retry_after_s == DEFAULT_RETRY_AFTER_S


def test_judge_tells_aiohttp_errors_before_sending_from_those_after() -> None:
    """slack_sdk's async client raises aiohttp's own errors: a refused connection (met for real, on a port nothing
    listens on) is not done; a server gone after the request may have been."""
    aiohttp = pytest.importorskip("aiohttp")
    from slack_sdk.web.async_client import AsyncWebClient

    from sandbox.ports import free_port

    async def refused() -> BaseException:
        client = AsyncWebClient(token="xoxb-0", base_url=f"http://127.0.0.1:{free_port()}/api/", retry_handlers=[])
        try:
            await client.api_call("auth.test")
        except Exception as e:
            return e
        raise AssertionError("nothing listens there")

    error = asyncio.run(refused())
    assert isinstance(error, aiohttp.ClientConnectorError)
    assert (judge(error).kind, judge(error).cause) == (RETRY, "network")
    assert (judge(aiohttp.ConnectionTimeoutError()).kind, judge(aiohttp.ConnectionTimeoutError()).cause) == (
        RETRY,
        "timeout",
    )
    assert (judge(aiohttp.ServerDisconnectedError()).kind, judge(aiohttp.ServerDisconnectedError()).cause) == (
        UNSURE,
        "network",
    )
    assert judge(aiohttp.SocketTimeoutError()).kind == UNSURE  # waiting for the answer: Slack may have it
