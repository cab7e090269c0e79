"""Ports for servers that a test (or the sandbox) starts itself, safe while other tests run in parallel.

The usual trick, binding port 0 and closing the socket, leaves the port free for anyone until the server
binds it: a listener of a test running in parallel, or an outgoing connection, can be handed it meanwhile,
and a server stopped and started again on "its" port (a Redis killed and restarted, the sandbox's Web API
after a refused outage) can find it gone. A held port stays bound by a socket that never listens:
connecting to it is refused, as if nothing were there; the kernel hands it to no other `bind(port 0)` and
to no outgoing connection; yet a server that binds the same address with SO_REUSEADDR (asyncio's default
on Unix, http.server's `allow_reuse_address`, redis-server) still can, because Linux lets SO_REUSEADDR
sockets share an address while none of them listens. Elsewhere SO_REUSEADDR means something else, so
the ports are only probed, not held.
"""

from __future__ import annotations

import socket
import sys

__all__ = ["HOLDS", "free_port", "hold_port"]

HOLDS = sys.platform == "linux"
"""Whether a held port can still be bound by a SO_REUSEADDR server (Linux's rule)."""

_held: list[socket.socket] = []  # free_port's holds, for the life of the process


def hold_port(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound to (`host`, `port`) (0: a free one) that never listens; close it to let go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A free port on `host` for a server to bind with SO_REUSEADDR, held until this process exits (on
    Linux), so that no one else is given it, however often that server stops and starts again."""
    sock = hold_port(host)
    port = int(sock.getsockname()[1])
    if HOLDS:
        _held.append(sock)
    else:
        sock.close()
    return port
