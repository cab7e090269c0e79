"""`python app.py` with the workarounds that have no setting switched off, for `bench/split_eval.py` only.

    BENCH_LIBRARY_ACKS=1 BENCH_NO_ACKS_FIRST=1 python bench/nonstop_plain.py    # plus app.py's own settings

- `BENCH_LIBRARY_ACKS=1`: acks leave through the library's own `send()`, one message each, as in
  `bench/split_prototype.py`, instead of the frames `nonstop.frames` makes and `Link._write` writes in
  one system call per turn. (The link's pings keep their hand-made frames, as in the prototype.)
- `BENCH_NO_ACKS_FIRST=1`: listeners start in the loop iteration after their acks were written, instead
  of once envelopes stop arriving for 5 ms (`nonstop.dispatch.START_WHEN_QUIET_S`).

Thread niceness and the GIL switch interval have settings: `NONSTOP_HANDLER_NICE=0`,
`NONSTOP_GIL_SWITCH_INTERVAL=0`. The patches reach into the runtime's internals (`Link._write_soon`,
`Link._ws`, the `Dispatcher` name in `nonstop.supervisor`) and fail loudly when those move.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.split_prototype import send_plainly  # noqa: E402
from nonstop import dispatch, link, supervisor  # noqa: E402

__all__ = ["patch"]


def _write_with_library(self: link.Link, batch: list[tuple[str, object]]) -> None:
    """In place of `Link._write_soon`: the turn's acks, in order, through the library's `send()`."""

    async def send() -> None:
        ws = self._ws
        texts = [text for text, _ in batch]
        sent = 0 if ws is None or not self.is_open else await send_plainly(ws, texts)
        for _, on_failure in batch[sent:]:
            on_failure()  # type: ignore[operator]

    task = asyncio.get_running_loop().create_task(send())
    self._tasks.append(task)
    task.add_done_callback(self._tasks.remove)


def patch(env: dict[str, str] | os._Environ[str]) -> list[str]:
    """Apply the patches `env` asks for; return their names. Raises AttributeError when a target moved."""
    applied: list[str] = []
    if env.get("BENCH_LIBRARY_ACKS") == "1":
        link.Link._write_soon  # noqa: B018 - the target must exist, or the patch would silently do nothing
        link.Link._write_soon = _write_with_library  # type: ignore[method-assign,assignment]
        applied.append("library acks")
    if env.get("BENCH_NO_ACKS_FIRST") == "1":
        original = supervisor.Dispatcher
        if original is not dispatch.Dispatcher:
            raise AttributeError("nonstop.supervisor.Dispatcher is not nonstop.dispatch.Dispatcher any more")
        supervisor.Dispatcher = functools.partial(original, start_when_quiet_s=0.0, start_within_s=0.0)  # type: ignore[misc]
        applied.append("no acks-first delay")
    return applied


if __name__ == "__main__":
    print(f"nonstop_plain: {', '.join(patch(os.environ)) or 'no patch'}", file=sys.stderr, flush=True)
    import app  # after the patches

    sys.exit(app.main(sys.argv[1:]))
