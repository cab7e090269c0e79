"""`sqlite:///PATH`: the ledger in one SQLite file (stdlib sqlite3, WAL), for a bot on one host.

`sqlite:///ledger.sqlite3` is relative to the working directory, `sqlite:////var/lib/nonstop/ledger.sqlite3`
absolute. `?synchronous=full` makes every write wait for the disk (survives a power cut); the default,
`normal`, survives any crash or kill of the process (the write is in the OS's hands when the ack leaves).

All calls come from the pipeline on the event loop, one batch per loop turn; each is a short transaction on
a local file, so they run inline rather than on a thread. Two things keep a slow disk from holding an ack:

- The loop's connection waits at most `LOOP_BUSY_TIMEOUT_S` for the write lock, well inside Slack's 3 s ack
  deadline. A batch that cannot be written by then is not recorded, so not acked: Slack retries it.
- The one slow part of WAL mode, the checkpoint that copies the log back into the database and flushes it,
  never runs on the loop: SQLite's automatic checkpoint is off on the loop's connection, and a thread
  checkpoints with a connection of its own, at most every `CHECKPOINT_EVERY_S` seconds, and only after
  something was written (an idle bot pays no wake-ups). It never waits for the write lock itself (timeout 0).
  If it cannot run (it cannot connect, or it fails), the loop's connection checkpoints automatically again
  and the log says so once: the log stays bounded either way.

An envelope is stored as the link received it (`Entry.text`), not serialised again. Measurements behind
these choices: docs/decisions.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nonstop.ledger.base import MAX_RUNS, Entry, Ledger, LedgerError, Recovered, checked_marks, load_envelope

T = TypeVar("T")

log = logging.getLogger("nonstop.ledger")

SCHEMA_VERSION = 2
"""1: events. 2: and the conversations' high-water marks, and `meta` (a version-1 file migrates on open)."""
CHECKPOINT_EVERY_S = 2.0
LOOP_BUSY_TIMEOUT_S = 0.25
"""How long an admission waits for the write lock (the checkpointer's brief write, another process)."""
AUTOCHECKPOINT_PAGES = 1000
"""SQLite's own default, for when the checkpoint thread cannot do its job."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key      TEXT PRIMARY KEY,
    envelope TEXT,              -- while pending: the envelope, to run again after a crash
    runs     INTEGER NOT NULL,  -- start-ups during which it was admitted or replayed
    done_at  REAL               -- NULL while pending; wall-clock time it finished
);
CREATE INDEX IF NOT EXISTS events_done_at ON events (done_at) WHERE done_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS marks (
    conversation TEXT PRIMARY KEY,
    ts           TEXT NOT NULL,     -- as given
    micros       INTEGER NOT NULL   -- the same ts in microseconds: what is compared
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL);
"""
_OLD_KEYS_UNTIL = "old_keys_until"
"""Until when (wall clock) a file written by version 1 may hold a mention under its older key, `event:<id>`."""


class SqliteLedger(Ledger):
    def __init__(
        self,
        path: Path,
        ttl_s: float,
        *,
        synchronous: str = "normal",
        clock: Callable[[], float] = time.time,
        connect: Callable[..., sqlite3.Connection] = sqlite3.connect,
    ) -> None:
        self.path = path
        self._connect = connect
        self.url = f"sqlite:///{path}"
        self._ttl_s = ttl_s
        self._synchronous = synchronous
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self._written = threading.Event()  # the log has grown since the last checkpoint began
        self._checkpointer_lost = False  # the thread cannot checkpoint: the loop's connection does it again
        self._old_keys_until = 0.0  # while the clock is before it, admissions also look for an entry's alias

    # -- Ledger --------------------------------------------------------------------------------------

    async def open(self) -> Recovered:
        return self.open_now()

    def open_now(self) -> Recovered:
        """`open()` without an event loop: `app.py` checks the ledger before signing in."""
        if self._db is not None:
            return Recovered([], [])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect(self.path, isolation_level=None, check_same_thread=False, timeout=LOOP_BUSY_TIMEOUT_S)
        except (OSError, sqlite3.Error) as e:
            raise LedgerError(f"cannot open the ledger file {self.path}: {e}") from None
        try:
            if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise sqlite3.DatabaseError("quick_check failed")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self._synchronous == 'full' else 'NORMAL'}")
            db.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring: checkpoints run off the loop
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise LedgerError(
                    f"the ledger file {self.path} has schema version {version}, this Nonstop knows {SCHEMA_VERSION}: "
                    "it was written by another version; move it aside (pending events in it will not run)"
                )
            db.executescript(_SCHEMA)  # idempotent; executescript commits on its own
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # a write: proves the file is writable, now
            if version == 1:  # its done mentions are known as event:<id> for one more dedupe TTL
                db.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    (_OLD_KEYS_UNTIL, self._clock() + self._ttl_s),
                )
            row = db.execute("SELECT value FROM meta WHERE name = ?", (_OLD_KEYS_UNTIL,)).fetchone()
            self._old_keys_until = float(row[0]) if row else 0.0
            recovered = self._recover(db)
            db.execute("COMMIT")
        except LedgerError:
            db.close()
            raise
        except sqlite3.DatabaseError as e:
            db.close()
            raise LedgerError(
                f"the ledger file {self.path} is unusable ({e}): if it is corrupt, move it aside "
                "(pending events in it will not run); if it is read-only, make it writable for the bot's user"
            ) from None
        self._db = db
        self._closing.clear()
        self._written.set()  # opening wrote (the schema version, maybe recovered rows)
        try:
            checkpoints = self._connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        except (OSError, sqlite3.Error) as e:
            self._checkpointer_gone(e)
        else:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_forever, args=(checkpoints,), name="nonstop-ledger-wal", daemon=True
            )
            self._checkpointer.start()
        return recovered

    def _checkpoint_forever(self, db: sqlite3.Connection) -> None:
        try:
            while True:
                self._written.wait()
                # Writes in the next CHECKPOINT_EVERY_S share this checkpoint: under a burst, one per period.
                if self._closing.is_set() or self._closing.wait(CHECKPOINT_EVERY_S):
                    break
                self._written.clear()  # before the checkpoint: a write during it is caught by the next one
                self._checkpoint(db)
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # leave a small file behind
        except Exception as e:  # never silently: without it the log would grow without bound
            self._checkpointer_gone(e)
        finally:
            db.close()

    @staticmethod
    def _checkpoint(db: sqlite3.Connection) -> None:
        try:
            busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError:  # busy now: the next round catches up
            return
        if not busy and frames > 0 and copied == frames:
            # The whole log is back in the database, so the next write starts the log over, and with
            # synchronous=NORMAL whoever does that flushes the log's header to disk. Do it here instead of on
            # the loop: a one-page write of the schema version the file already has. Timeout 0: if the loop
            # holds the lock, the loop pays that flush this once rather than wait for this thread.
            with contextlib.suppress(sqlite3.OperationalError):
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _checkpointer_gone(self, error: BaseException) -> None:
        self._checkpointer_lost = True
        log.error(
            "the ledger's checkpoint thread cannot run (%s: %s); the write-ahead log of %s is checkpointed on "
            "the event loop from now on, which may delay acks a little",
            type(error).__name__,
            error,
            self.path,
        )

    def _recover(self, db: sqlite3.Connection) -> Recovered:
        rows = db.execute("SELECT key, envelope, runs FROM events WHERE done_at IS NULL ORDER BY rowid").fetchall()
        unfinished: list[Entry] = []
        given_up: list[Entry] = []
        now = self._clock()
        for key, envelope, runs in rows:
            entry = Entry(key, load_envelope(envelope), runs)
            if runs >= MAX_RUNS or not entry.envelope:
                given_up.append(entry)
                db.execute("UPDATE events SET done_at = ?, envelope = NULL WHERE key = ?", (now, key))
            else:
                unfinished.append(Entry(key, entry.envelope, runs + 1))
                db.execute("UPDATE events SET runs = runs + 1 WHERE key = ?", (key,))
        return Recovered(unfinished, given_up)

    async def admit(self, entries: list[Entry]) -> list[bool]:
        return self.admit_now(entries)

    def admit_now(self, entries: list[Entry]) -> list[bool]:
        db = self._require()
        added: set[str] = set()
        try:
            known = self._known_aliases(db, entries) if self._old_keys_until else set()
            for chunk in _chunks([e for e in entries if e.alias not in known] if known else entries):
                # One statement, its own transaction: in the common case (every event new) a piece costs one
                # step (see `_chunks` for why steps count). Only when some were already known are the new
                # ones read back: the statement's rows, whose rowids run up to last_insert_rowid.
                cursor = db.execute(_insert_rows(len(chunk)), [v for e in chunk for v in (e.key, e.envelope_json())])
                if cursor.rowcount == len(chunk):
                    added.update(e.key for e in chunk)
                elif cursor.rowcount > 0 and cursor.lastrowid is not None:
                    rows = db.execute(_NEW_ROWS, (cursor.lastrowid - cursor.rowcount, cursor.lastrowid))
                    added.update(key for (key,) in rows)
        except sqlite3.Error as e:
            raise LedgerError(f"cannot write to the ledger file {self.path}: {e}") from None
        self._wrote()
        fresh = []
        for entry in entries:  # the same event twice in one batch (two connections): the first one is new
            fresh.append(entry.key in added)
            added.discard(entry.key)
        return fresh

    def _known_aliases(self, db: sqlite3.Connection, entries: list[Entry]) -> set[str]:
        """The entries' aliases this file has, while it may still hold keys an older version wrote."""
        if self._clock() >= self._old_keys_until:
            self._old_keys_until = 0.0
            return set()
        aliases = list({e.alias for e in entries if e.alias is not None})
        known: set[str] = set()
        for chunk in _chunks(aliases):
            rows = db.execute(f"SELECT key FROM events WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            known.update(key for (key,) in rows)
        return known

    async def finish(self, keys: list[str]) -> None:
        db = self._require()
        now = self._clock()
        try:
            for chunk in _chunks(keys):  # each its own transaction: marking done twice is harmless
                db.execute(_finish_keys(len(chunk)), [now, *chunk])
        except sqlite3.Error as e:
            raise LedgerError(f"cannot write to the ledger file {self.path}: {e}") from None
        self._wrote()

    async def prune(self) -> int:
        db = self._require()
        try:
            pruned = db.execute(
                "DELETE FROM events WHERE done_at IS NOT NULL AND done_at < ?", (self._clock() - self._ttl_s,)
            ).rowcount
        except sqlite3.Error as e:
            raise LedgerError(f"cannot write to the ledger file {self.path}: {e}") from None
        if pruned:
            self._wrote()
        return pruned

    async def marks(self) -> dict[str, str]:
        db = self._require()
        try:
            return dict(db.execute("SELECT conversation, ts FROM marks").fetchall())
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read the ledger file {self.path}: {e}") from None

    async def advance_marks(self, marks: dict[str, str]) -> None:
        rows = [(conversation, ts, micros) for conversation, (ts, micros) in checked_marks(marks).items()]
        if not rows:
            return
        db = self._require()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_ADVANCE_MARK, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise LedgerError(f"cannot write to the ledger file {self.path}: {e}") from None
        self._wrote()

    async def close(self) -> None:
        self._closing.set()
        self._written.set()  # wakes the checkpointer for its last, truncating checkpoint
        if self._checkpointer is not None:
            self._checkpointer.join(5)
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def durable(self) -> bool:
        return True

    # -- helpers -------------------------------------------------------------------------------------

    def _wrote(self) -> None:
        if not self._written.is_set():  # the common case under load: no lock taken
            self._written.set()
        if self._checkpointer_lost and self._db is not None:
            self._checkpointer_lost = False
            with contextlib.suppress(sqlite3.Error):
                self._db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise LedgerError(f"the ledger file {self.path} is not open")
        return self._db


# A batch is written with a few statements, not one per event, and without BEGIN/COMMIT around them: sqlite3
# lets go of the GIL at every statement step, and when listener threads run, the loop thread then queues
# behind them to get it back, once per step. Pieces are powers of two, so the connection's statement cache
# holds at most nine shapes of each statement, not one per batch size. Numbers: docs/decisions.md.
_LARGEST_PIECE = 256


def _chunks(items: list[T]) -> list[list[T]]:
    """`items` in pieces of 256, 128, ... 1 (largest first): 300 events are 4 statements."""
    pieces: list[list[T]] = []
    at = 0
    while at < len(items):
        size = min(_LARGEST_PIECE, 1 << ((len(items) - at).bit_length() - 1))
        pieces.append(items[at : at + size])
        at += size
    return pieces


_ADVANCE_MARK = """
INSERT INTO marks (conversation, ts, micros) VALUES (?, ?, ?)
ON CONFLICT (conversation) DO UPDATE SET ts = excluded.ts, micros = excluded.micros WHERE excluded.micros > marks.micros
"""
_NEW_ROWS = "SELECT key FROM events WHERE rowid > ? AND rowid <= ?"


@functools.cache
def _insert_rows(n: int) -> str:
    rows = ",".join(["(?, ?, 1)"] * n)
    return f"INSERT INTO events (key, envelope, runs) VALUES {rows} ON CONFLICT (key) DO NOTHING"


@functools.cache
def _finish_keys(n: int) -> str:
    return f"UPDATE events SET done_at = ?, envelope = NULL WHERE key IN ({','.join('?' * n)})"
