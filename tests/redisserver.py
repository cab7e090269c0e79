"""A throwaway `redis-server` on a free loopback port, that a test can SIGKILL and start again.

Never the system's Redis on 6379: each server has its own port and directory, no persistence (a
restart comes back empty, the worst case the cluster must survive) and dies with the test.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.ports import free_port
from tests.tools import require

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)


class RedisServer:
    def __init__(self, workdir: Path, password: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate chain, key) PEM files: the server then speaks TLS only (rediss://)."""
        assert REDIS_SERVER is not None
        self.password = password
        self.tls = tls
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        login = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{login}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *self._port_args(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "yes",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while self.tls:  # a TLS port answers no plain PING: wait until it listens
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):  # up (with a password: it asks for it)
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        cert, key = self.tls
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-auth-clients", "no"]  # fmt: skip

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def command(self, *words: str) -> bytes:
        """One raw command (for checks from the test's side), its reply's first line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            if self.password:
                s.sendall(f"AUTH {self.password}\r\n".encode())
                s.recv(64)
            s.sendall((" ".join(words) + "\r\n").encode())
            return s.recv(65536)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require(REDIS_SERVER is not None, "redis-server (Debian package redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()
