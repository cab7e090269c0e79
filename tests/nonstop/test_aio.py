"""`in_daemon_thread`: a blocking call awaited from the loop, that never holds up a stop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from nonstop.aio import in_daemon_thread
from tests.botprocess import REPO


def test_the_result_and_the_error_of_the_call_reach_the_awaiting_task() -> None:
    async def scenario() -> None:
        assert await in_daemon_thread(threading.current_thread, "t") is not threading.main_thread()
        assert await in_daemon_thread(lambda: 41 + 1, "t") == 42
        with pytest.raises(ZeroDivisionError):
            await in_daemon_thread(lambda: 1 / 0, "t")

    asyncio.run(scenario())


def test_a_call_still_blocked_at_the_stop_holds_up_neither_asyncio_run_nor_the_exit() -> None:
    script = textwrap.dedent(
        """
        import asyncio, time
        from nonstop.aio import in_daemon_thread

        async def main():
            task = asyncio.create_task(in_daemon_thread(lambda: time.sleep(30), "stuck"))
            await asyncio.sleep(0.1)
            task.cancel()

        asyncio.run(main())
        """
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=20)
    assert time.monotonic() - started < 10, "the process waited for the blocked call"
