"""Errors that end the process with a message a person can act on."""

from __future__ import annotations

__all__ = ["EX_CONFIG", "ConfigError"]

EX_CONFIG = 78
"""sysexits.h: configuration error. Service managers are told not to restart on it."""


class ConfigError(Exception):
    """A setting is missing or ill-formed, or retrying cannot fix what was found. The message is one line,
    safe to print (no token values)."""
