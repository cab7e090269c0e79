"""The SQLite ledger's own promises beyond the contract: a disk or a lock never holds an ack past Slack's
deadline, its write-ahead log stays bounded whether or not its checkpoint thread can run, and that thread
costs an idle bot nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from nonstop.ledger import Entry, LedgerError
from nonstop.ledger.sqlite import SqliteLedger

SLACK_ACK_DEADLINE_S = 3.0


def entries(first: int, count: int, size: int = 0) -> list[Entry]:
    return [
        Entry(f"event:Ev{n:06d}", {"envelope_id": f"env-{n}", "type": "events_api", "payload": {"x": "y" * size}})
        for n in range(first, first + count)
    ]


def _in_main_file(path: Path, key: str) -> bool:
    """Whether `key` is in the database file itself, not only in its write-ahead log (immutable=1 reads the
    main file and ignores the log): true once a checkpoint has copied it back."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return db.execute("SELECT count(*) FROM events WHERE key = ?", (key,)).fetchone()[0] == 1
    except sqlite3.DatabaseError:  # no table yet (the schema is still only in the log), or read mid-checkpoint
        return False
    finally:
        db.close()


def test_a_held_write_lock_costs_an_admission_less_than_slacks_deadline(tmp_path: Path) -> None:
    """Another process (a backup, a second bot on the same file) holds the write lock: the admission gives
    up, unrecorded and so unacked (Slack retries it), instead of holding the loop past the ack deadline."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60)
    ledger.open_now()
    other = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(LedgerError, match="database is locked"):
            ledger.admit_now(entries(0, 1))
        assert time.monotonic() - started < SLACK_ACK_DEADLINE_S
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert ledger.admit_now(entries(0, 1)) == [True], "written once the lock is free: nothing lost"
    asyncio.run(ledger.close())


def test_without_its_checkpoint_thread_the_log_stays_bounded_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        nonlocal calls
        calls += 1
        if calls == 2:  # the checkpoint thread's connection
            raise sqlite3.OperationalError("unable to open database file")
        return sqlite3.connect(*args, **kwargs)

    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path, ttl_s=60, connect=connect)
    with caplog.at_level(logging.ERROR, logger="nonstop.ledger"):
        ledger.open_now()
    assert "checkpoint thread cannot run" in caplog.text
    for first in range(0, 12_000, 400):  # about 12 MB of envelopes
        ledger.admit_now(entries(first, 400, size=1000))
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size < 8 * 1024 * 1024, f"the log grew to {wal.stat().st_size} bytes"
    asyncio.run(ledger.close())


def _done_in_main_file(path: Path, key: str) -> bool:
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        row = db.execute("SELECT done_at FROM events WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] is not None
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()


def _futex_wait_without_timeout(native_id: int) -> bool:
    """Whether the thread is blocked in futex(2) with no timeout (its 4th argument NULL): it will not wake
    until another thread wakes it."""
    fields = Path(f"/proc/self/task/{native_id}/syscall").read_text().split()
    return fields[0] == "202" and fields[4] == "0x0"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a thread's state from Linux's /proc")
def test_the_checkpoint_thread_checkpoints_after_writes_and_waits_without_a_timer_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nonstop.ledger.sqlite.CHECKPOINT_EVERY_S", 0.02)
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path, ttl_s=60)
    ledger.open_now()
    thread = ledger._checkpointer
    assert thread is not None
    assert thread.native_id is not None

    def until(check: Any, what: str) -> None:
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.005)

    try:
        ledger.admit_now(entries(1, 1))
        until(lambda: _in_main_file(path, "event:Ev000001"), "a write was never checkpointed into the database file")
        until(lambda: _futex_wait_without_timeout(thread.native_id), "idle, the thread must wait with no timer")
        asyncio.run(ledger.finish(["event:Ev000001"]))
        until(lambda: _done_in_main_file(path, "event:Ev000001"), "a write did not wake the thread")
    finally:
        asyncio.run(ledger.close())
    assert not thread.is_alive()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "close() leaves the log truncated"


_VERSION_1 = """
CREATE TABLE events (key TEXT PRIMARY KEY, envelope TEXT, runs INTEGER NOT NULL, done_at REAL);
CREATE INDEX events_done_at ON events (done_at) WHERE done_at IS NOT NULL;
PRAGMA user_version=1;
"""


def test_a_file_of_the_previous_version_opens_migrated_and_its_old_keys_still_dedupe(tmp_path: Path) -> None:
    """Version 1 had no marks, and knew a mention as event:<id>: the file opens with its pending event handed
    back, takes marks, and for one dedupe TTL a mention's alias finds the event:<id> it was recorded under."""
    path = tmp_path / "ledger.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(_VERSION_1)
    old.execute("INSERT INTO events VALUES ('event:EvDONE', NULL, 1, 999990.0)")
    old.execute("INSERT INTO events VALUES ('event:EvPENDING', ?, 1, NULL)", ('{"type":"events_api","payload":{}}',))
    old.commit()
    old.close()
    now = [1_000_000.0]
    ledger = SqliteLedger(path, ttl_s=60, clock=lambda: now[0])
    recovered = ledger.open_now()
    assert [e.key for e in recovered.unfinished] == ["event:EvPENDING"]
    asyncio.run(ledger.advance_marks({"C1": "1700000000.000100"}))
    assert asyncio.run(ledger.marks()) == {"C1": "1700000000.000100"}

    def mention(n: int, alias: str) -> Entry:
        return Entry(f"app_mention:C1:1700000000.00000{n}", {"type": "events_api", "payload": {}}, alias=alias)

    assert ledger.admit_now([mention(1, "event:EvDONE"), mention(2, "event:EvPENDING"), mention(3, "event:EvNEW")]) == [
        False,
        False,
        True,
    ]
    asyncio.run(ledger.close())
    now[0] += 61  # one TTL on, across a restart: the older keys are forgotten, and aliases no longer looked up
    again = SqliteLedger(path, ttl_s=60, clock=lambda: now[0])
    again.open_now()
    assert again.admit_now([mention(4, "event:EvPENDING")]) == [True]
    assert asyncio.run(again.marks()) == {"C1": "1700000000.000100"}
    asyncio.run(again.close())
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)


def test_a_file_of_a_newer_version_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version=3")
    with pytest.raises(LedgerError, match=r"schema version 3, this Nonstop knows 2") as caught:
        SqliteLedger(path, ttl_s=60).open_now()
    assert "\n" not in str(caught.value)
