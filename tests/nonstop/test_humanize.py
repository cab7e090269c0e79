from __future__ import annotations

import pytest

from nonstop.humanize import human_duration


@pytest.mark.parametrize(
    ("seconds", "tenths", "expected"),
    [
        (4.72, True, "4.7 s"),
        (4.72, False, "4 s"),
        (-1, True, "0.0 s"),
        (65, True, "1m 5s"),
        (3 * 3600 + 60, False, "3h 1m"),
    ],
)
def test_log_lines_keep_tenths_below_a_minute(seconds: float, tenths: bool, expected: str) -> None:
    assert human_duration(seconds, tenths=tenths) == expected
