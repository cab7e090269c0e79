"""Every sandbox in tests/network serves https:// and wss:// with a throwaway CA, unless a test says
`@pytest.mark.parametrize("sandbox_tls", [False], indirect=True)`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.tls import SandboxTLS
from tests.network.proxy import HttpProxy


@pytest.fixture
def sandbox_tls(request: pytest.FixtureRequest) -> Iterator[SandboxTLS | None]:
    if not getattr(request, "param", True):
        yield None
        return
    tls = SandboxTLS()
    yield tls
    tls.cleanup()


@pytest.fixture
def proxy() -> Iterator[HttpProxy]:
    """A real HTTP proxy on a free loopback port, without a login."""
    p = HttpProxy().start()
    yield p
    p.close()
