"""The answer rows (`bench/answers.py`) for an `AsyncApp`: Bolt's stock `AsyncSocketModeHandler` against Nonstop's
async drop-in, the same app (`bench/async_bot.py`), each a subprocess with its own sandbox, one after the other.

    python -m bench.aio_answers            # about 2 minutes
    python -m bench.aio_answers --app      # the same rows for an `App`: Bolt's `SocketModeHandler` against the
                                           # sync drop-in (`bench/stock_bot.py`, with and without `--dropin`)

Prints one line per row with its result as JSON (the numbers docs/benchmark.md keeps, "Its answers through the
governor"): answered / lost / twice, the 429s Slack saw, when all were answered, and the mentions elsewhere.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import answers  # noqa: E402
from bench.procs import NONSTOP_ASYNC, NONSTOP_DROPIN, STOCK_ASYNC  # noqa: E402
from sandbox.testing import PROXY_VARS  # noqa: E402


def rows(nonstop: str = NONSTOP_ASYNC, stock: str = STOCK_ASYNC) -> dict[str, Callable[[], dict[str, Any]]]:
    out: dict[str, Callable[[], dict[str, Any]]] = {}
    for kind in (nonstop, stock):
        out[f"at_the_limit/{kind}"] = lambda kind=kind: answers.at_the_limit(kind)
        out[f"http_503/{kind}"] = lambda kind=kind: answers.failing_posts(kind, "http_503", answers.FAILING)
    out[f"internal_error/{nonstop}_history"] = lambda: answers.failing_posts(
        nonstop, "internal_error", answers.UNSURE, answers.WITH_HISTORY
    )
    out[f"internal_error/{stock}"] = lambda: answers.failing_posts(stock, "internal_error", answers.UNSURE)
    return out


def main(argv: list[str]) -> int:
    for name in PROXY_VARS:  # the sandboxes are on 127.0.0.1
        os.environ.pop(name, None)
    app = "--app" in argv
    argv = [a for a in argv if a != "--app"]
    chosen = rows(NONSTOP_DROPIN, "stock") if app else rows()
    for name in argv or list(chosen):
        started = time.monotonic()
        result = chosen[name]()
        print(f"{name} ({time.monotonic() - started:.0f} s): {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
