"""Durations in words, for log lines and for what the bot tells users."""

from __future__ import annotations


def human_duration(seconds: float, *, tenths: bool = False) -> str:
    """A short human duration: "41 s" (or "4.7 s" with `tenths`), "12m 5s", "3h 12m", "2d 4h"."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if tenths else f"{int(seconds)} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
