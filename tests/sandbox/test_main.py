"""`python -m sandbox`'s options for the Web API's rules: rate limits (on unless told) and scopes."""

from __future__ import annotations

import pytest

from sandbox.__main__ import parse_args
from sandbox.config import BOT_SCOPES, HISTORY_SCOPES, READ_SCOPES


def test_production_like_by_default() -> None:
    config, tls = parse_args([])
    assert (config.rate_limits, config.post_per_channel_per_s, config.post_burst) == (True, 1.0, 4)
    assert config.tier_per_minute == (1, 20, 50, 100)
    assert config.bot_scopes == tuple(BOT_SCOPES.split(","))
    assert tls is False


def test_limits_and_scopes_from_the_command_line() -> None:
    config, _ = parse_args(["--no-rate-limits", "--post-rate", "2", "--post-burst", "8", "--tiers", "2,30,60,120"])
    assert (config.rate_limits, config.post_per_channel_per_s, config.post_burst) == (False, 2.0, 8)
    assert config.tier_per_minute == (2, 30, 60, 120)
    config, _ = parse_args(["--scopes", "chat:write", "--history-scopes"])
    assert config.bot_scopes == ("chat:write", *HISTORY_SCOPES, *READ_SCOPES)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tiers", "1,2"], "--tiers takes four whole numbers"),
        (["--tiers", "a,b,c,d"], "--tiers takes four whole numbers"),
        (["--post-burst", "0"], "post_burst must be at least 1"),
        (["--post-rate", "0"], "post_per_channel_per_s must be above 0"),
    ],
)
def test_a_bad_setting_gets_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
