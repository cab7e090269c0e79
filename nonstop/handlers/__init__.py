"""The drop-in handlers: Bolt's `SocketModeHandler` and `AsyncSocketModeHandler`, supervised.

- `sync.py`: `SupervisedSocketModeHandler` for an `App`; `aio.py`: `AsyncSupervisedSocketModeHandler` for an
  `AsyncApp` (imported on first use: Bolt's `AsyncApp` needs aiohttp, `pip install 'nonstop[async]'`, and an
  `App` does not).
- `client.py`: `handler.client`, what code written for slack_sdk's Socket Mode clients touches.
- `options.py`: the stock handlers' keywords and what each means here; `setup.py`: the defaults both take
  from the environment, and the supervisor of each run; `background.py`: a run on a thread of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nonstop.handlers.sync import SupervisedSocketModeHandler

if TYPE_CHECKING:
    from nonstop.handlers.aio import AsyncSupervisedSocketModeHandler

__all__ = ["AsyncSupervisedSocketModeHandler", "SupervisedSocketModeHandler"]


def __getattr__(name: str) -> Any:
    if name == "AsyncSupervisedSocketModeHandler":
        from nonstop.handlers.aio import AsyncSupervisedSocketModeHandler  # noqa: PLC0415 - needs aiohttp

        return AsyncSupervisedSocketModeHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
