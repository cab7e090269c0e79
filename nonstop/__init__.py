"""Nonstop's supervisor runtime: keep a Bolt app's Socket Mode link alive, forever.

from nonstop import SupervisedSocketModeHandler        # for an App: was SocketModeHandler
from nonstop import AsyncSupervisedSocketModeHandler   # for an AsyncApp: was AsyncSocketModeHandler
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nonstop.handlers.sync import SupervisedSocketModeHandler

if TYPE_CHECKING:
    from nonstop.handlers.aio import AsyncSupervisedSocketModeHandler

__all__ = ["AsyncSupervisedSocketModeHandler", "SupervisedSocketModeHandler"]


def __getattr__(name: str) -> Any:
    """`AsyncSupervisedSocketModeHandler` is imported on first use: Bolt's `AsyncApp` needs aiohttp (the
    `nonstop[async]` extra), and an `App` does not."""
    if name == "AsyncSupervisedSocketModeHandler":
        from nonstop.handlers.aio import AsyncSupervisedSocketModeHandler  # noqa: PLC0415 - needs aiohttp

        return AsyncSupervisedSocketModeHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
