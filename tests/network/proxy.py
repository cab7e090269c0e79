"""A real HTTP proxy (pproxy, from PyPI) on 127.0.0.1, as a subprocess the tests can kill, restart and freeze.

Its verbose log has one line per proxied request or CONNECT tunnel, naming the destination
(`http 127.0.0.1:51234 -> 127.0.0.1:40123`), and one per refused login (`Unauthorized HTTP from …`):
that log is what the tests count.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox.ports import free_port


class HttpProxy:
    def __init__(self, credentials: str | None = None) -> None:
        self.port = free_port()
        self.credentials = credentials  # "user:password" the proxy demands, or None
        self._dir = tempfile.TemporaryDirectory(prefix="nonstop-proxy-")
        self.log_path = Path(self._dir.name) / "proxy.log"
        self.log_path.touch()
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, credentials: str | None = None) -> str:
        """The proxy URL for HTTPS_PROXY, with `credentials` ("user:password") if given."""
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self, timeout: float = 15) -> HttpProxy:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        listen = f"http://127.0.0.1:{self.port}" + (f"#{self.credentials}" if self.credentials else "")
        with self.log_path.open("ab") as log:
            # --auth 0: ask for the credentials on every request (pproxy's default trusts an address for 30 days)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pproxy", "-l", listen, "-v", "--auth", "0"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the proxy did not start on port {self.port}:\n{self.log}") from None
                time.sleep(0.05)

    def forwarded(self, port: int | None = None) -> int:
        """How many requests/tunnels the proxy has forwarded (to `port` on 127.0.0.1, if given)."""
        target = rf"127\.0\.0\.1:{port}" if port is not None else r"\S+"
        return len(re.findall(rf"^http \S+ -> {target}$", self.log, re.MULTILINE))

    def refused_logins(self) -> int:
        return self.log.count("Unauthorized HTTP from")

    def kill(self) -> None:
        """Gone at once, like a crashed proxy: every tunnel through it is cut."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def freeze(self) -> None:
        """The proxy stops forwarding but keeps every TCP connection open (SIGSTOP)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self.kill()
        self._dir.cleanup()
