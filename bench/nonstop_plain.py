"""`python app.py` with the workarounds that have no setting switched off, for `bench/split_eval.py` only.

    BENCH_LIBRARY_ACKS=1 BENCH_NO_ACKS_FIRST=1 python bench/nonstop_plain.py    # plus app.py's own settings

- `BENCH_LIBRARY_ACKS=1`: acks leave through the library's own `send()`, one message each, as in
  `bench/split_prototype.py`, instead of the frames `nonstop.links.frames` makes and
  `nonstop.links.writer.FrameWriter` writes in one system call per turn. (Pings keep their hand-made frames.)
- `BENCH_NO_ACKS_FIRST=1`: listeners start in the loop iteration after their acks were written, instead
  of once envelopes stop arriving for 5 ms (`nonstop.pipeline.core.START_WHEN_QUIET_S`).

Thread niceness and the GIL switch interval have settings: `NONSTOP_HANDLER_NICE=0`,
`NONSTOP_GIL_SWITCH_INTERVAL=0`. The patches reach into the runtime's internals (`FrameWriter._write_turn`,
`FrameWriter._ws`, the `EventPipeline` name in `nonstop.supervisor`) and fail loudly when those move.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.split_prototype import send_plainly  # noqa: E402
from nonstop import supervisor  # noqa: E402
from nonstop.links import writer  # noqa: E402
from nonstop.pipeline import core  # noqa: E402

__all__ = ["patch"]


def _write_with_library(self: writer.FrameWriter, batch: list[tuple[str, object]]) -> None:
    """In place of `FrameWriter._write_turn`: the turn's acks, in order, through the library's `send()`."""

    async def send() -> None:
        ws = self._ws
        texts = [text for text, _ in batch]
        sent = 0 if ws is None else await send_plainly(ws, texts)
        for _, on_failure in batch[sent:]:
            on_failure()  # type: ignore[operator]

    self._tasks.spawn(send())


def patch(env: dict[str, str] | os._Environ[str]) -> list[str]:
    """Apply the patches `env` asks for; return their names. Raises AttributeError when a target moved."""
    applied: list[str] = []
    if env.get("BENCH_LIBRARY_ACKS") == "1":
        writer.FrameWriter._write_turn  # noqa: B018 - the target must exist, or the patch would silently do nothing
        writer.FrameWriter._write_turn = _write_with_library  # type: ignore[method-assign,assignment]
        applied.append("library acks")
    if env.get("BENCH_NO_ACKS_FIRST") == "1":
        original = supervisor.EventPipeline
        if original is not core.EventPipeline:
            raise AttributeError("nonstop.supervisor.EventPipeline is not nonstop.pipeline.core.EventPipeline any more")
        patched = functools.partial(original, start_when_quiet_s=0.0, start_within_s=0.0)
        supervisor.EventPipeline = patched  # type: ignore[misc]
        applied.append("no acks-first delay")
    return applied


if __name__ == "__main__":
    print(f"nonstop_plain: {', '.join(patch(os.environ)) or 'no patch'}", file=sys.stderr, flush=True)
    import app  # after the patches

    sys.exit(app.main(sys.argv[1:]))
