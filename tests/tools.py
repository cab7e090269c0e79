"""Tests that need a tool from outside Python (redis-server, Debian's python3-seccomp, …).

On a developer's machine without the tool they skip with one clear reason; where the tools are
promised (CI sets TESTS_REQUIRE_TOOLS=1 after installing them), a missing tool fails the test.
"""

from __future__ import annotations

import os

import pytest


def require(present: bool, what: str) -> None:
    if present:
        return
    if os.environ.get("TESTS_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{what} is required here (TESTS_REQUIRE_TOOLS=1) but missing")
    pytest.skip(f"{what} is not installed here")
