"""Where the ledger lives, as `NONSTOP_LEDGER` says: `memory://`, `sqlite:///PATH`, or `redis://HOST:PORT/DB`
(`rediss://` for TLS), which replicas share; and where it lives when the variable is not set."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["LEDGER_FILE", "default_ledger_url", "parse_ledger_url", "shared_ledger"]

LEDGER_FILE = "nonstop-ledger.sqlite3"


def default_ledger_url(env: Mapping[str, str] | None = None) -> str:
    """systemd's StateDirectory= (it sets $STATE_DIRECTORY) when there is one, else the working directory."""
    env = os.environ if env is None else env
    state = (env.get("STATE_DIRECTORY") or "").split(":")[0]
    return f"sqlite:///{Path(state) / LEDGER_FILE}" if state else f"sqlite:///{LEDGER_FILE}"


def shared_ledger(url: str) -> bool:
    """The ledger is on Redis, shared by replicas (which then share their posting budget there too)."""
    return urlsplit(url).scheme in ("redis", "rediss")


def parse_ledger_url(url: str) -> tuple[str, Path | None, dict[str, str]]:
    """(scheme, path for sqlite, options). Raises ValueError with a one-line reason."""
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        return "memory", None, options
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise ValueError("a sqlite URL has no host: sqlite:///relative/file or sqlite:////absolute/file")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError("a sqlite URL needs a file: sqlite:///nonstop-ledger.sqlite3")
        if options.get("synchronous", "normal") not in ("normal", "full"):
            raise ValueError("synchronous= is normal or full")
        return "sqlite", Path(path), options
    if parts.scheme in ("redis", "rediss"):
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the port is not a number") from None
        if not parts.hostname:
            raise ValueError(f"a {parts.scheme} URL needs a host: {parts.scheme}://HOST:6379/0")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise ValueError(f"the database is a number: {parts.scheme}://HOST:{port or 6379}/0")
        unknown = set(options) - {"prefix"}
        if unknown:
            raise ValueError(f"unknown option {sorted(unknown)[0]}= (known: prefix=)")
        return parts.scheme, None, options
    raise ValueError("expected memory://, sqlite:///PATH or redis://HOST:PORT/DB")
