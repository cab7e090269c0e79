"""One contract, every ledger backend: what `nonstop.ledger.Ledger` promises, checked against each."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nonstop.backends import open_local_ledger
from nonstop.config.urls import parse_ledger_url
from nonstop.ledger import MAX_RUNS, Entry, Ledger, LedgerError, Recovered
from nonstop.ledger.memory import MemoryLedger
from nonstop.ledger.redis import RedisLedger
from nonstop.ledger.sqlite import SqliteLedger
from nonstop.net.redis import RedisConnection


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


_LOOP = asyncio.new_event_loop()  # one loop for the module: a Redis client belongs to the loop it was opened on


def run(coro):  # type: ignore[no-untyped-def]
    return _LOOP.run_until_complete(coro)


def entry(n: int) -> Entry:
    return Entry(f"event:Ev{n:05d}", {"envelope_id": f"env-{n}", "type": "events_api", "payload": {"event_id": n}})


Factory = Callable[[], Ledger]


class RedisReplicas:
    """Each ledger made is another replica on one Redis (a restart is a new one), with its own connection; the
    replicas made before it are dead, as after a crash, and their events are the new one's to take over."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._numbers = itertools.count(1)
        self.owners: list[str] = []

    def __call__(self) -> RedisLedger:
        connection = RedisConnection(self._url)
        run(connection.open())
        owner = f"r{next(self._numbers)}"
        self.owners.append(owner)
        return RedisLedger(connection, ttl_s=60, owner=owner)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Factory, Clock]]:
    clock = Clock()
    if request.param == "memory":
        yield "memory", lambda: MemoryLedger(ttl_s=60, clock=clock), clock
    elif request.param == "sqlite":
        yield "sqlite", lambda: SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60, clock=clock), clock
    else:
        server = request.getfixturevalue("redis_server")
        yield "redis", RedisReplicas(server.url), clock  # Redis keeps time itself


def recover(ledger: Ledger) -> Recovered:
    """What a starting process finds to run again: from `open()` for a ledger of one process; for a shared
    one, what it takes over from the replicas before it (the coordinator calls them dead; here they are)."""
    recovered = run(ledger.open())
    if not isinstance(ledger, RedisLedger):
        return recovered
    unfinished: list[Entry] = []
    given_up: list[Entry] = []
    for dead in [f"r{n}" for n in range(1, int(ledger.owner[1:]))]:
        found = run(ledger.reassign(dead))
        unfinished += found.unfinished
        given_up += found.given_up
    return Recovered(sorted(unfinished, key=lambda e: e.key), given_up)


def test_admit_says_new_once_and_duplicate_after(backend) -> None:
    _, make, _ = backend
    ledger = make()
    run(ledger.open())
    assert run(ledger.admit([entry(1), entry(2), entry(1)])) == [True, True, False]
    assert run(ledger.admit([entry(2)])) == [False], "pending is known"
    run(ledger.finish([entry(2).key]))
    assert run(ledger.admit([entry(2)])) == [False], "done is known"
    run(ledger.close())


def test_a_batch_of_a_thousand_is_admitted_and_finished_whole(backend) -> None:
    """A burst's batch is bigger than one write (the SQLite backend writes 400 rows a statement)."""
    _, make, _ = backend
    ledger = make()
    run(ledger.open())
    batch = [entry(n) for n in range(1000)]
    assert run(ledger.admit(batch[:10])) == [True] * 10
    assert run(ledger.admit(batch)) == [False] * 10 + [True] * 990
    run(ledger.finish([e.key for e in batch]))
    assert run(ledger.admit([entry(999), entry(1000)])) == [False, True]
    run(ledger.close())
    again = make()
    found = recover(again)
    if again.durable:
        assert [e.key for e in found.unfinished] == [entry(1000).key], "only the one never finished"
    run(again.close())


def test_sqlite_writes_any_batch_with_a_few_statement_shapes() -> None:
    """Pieces of 256, 128, ... 1: whatever the batch sizes, the connection prepares at most nine shapes of
    each statement (a shape per size kept up to 128 large statements cached: RSS +54 MB)."""
    from nonstop.ledger.sqlite import _chunks

    shapes: set[int] = set()
    for n in range(1, 1200):
        pieces = _chunks(list(range(n)))
        assert [x for piece in pieces for x in piece] == list(range(n))
        assert len(pieces) == n // 256 + bin(n % 256).count("1")  # 300 events: 256 + 32 + 8 + 4, 4 statements
        shapes.update(len(piece) for piece in pieces)
    assert shapes == {1, 2, 4, 8, 16, 32, 64, 128, 256}


def test_done_is_forgotten_after_the_ttl_and_pending_never(backend) -> None:
    name, make, clock = backend
    if name == "redis":
        pytest.skip("Redis expires done entries on its own clock: see test_redis_ledger.py")
    ledger = make()
    run(ledger.open())
    run(ledger.admit([entry(1), entry(2)]))
    run(ledger.finish([entry(1).key]))
    clock.now += 59
    assert run(ledger.prune()) == 0
    clock.now += 2
    assert run(ledger.prune()) == 1
    assert run(ledger.admit([entry(1), entry(2)])) == [True, False]
    run(ledger.close())


def test_durable_backends_hand_back_unfinished_entries_after_a_restart(backend) -> None:
    name, make, _ = backend
    first = make()
    run(first.open())
    run(first.admit([entry(1), entry(2), entry(3)]))
    run(first.finish([entry(2).key]))
    run(first.close())  # or a SIGKILL: every admit/finish is already committed
    second = make()
    recovered = recover(second)
    if not second.durable:
        assert name == "memory"
        assert recovered.unfinished == []
        return
    assert [e.key for e in recovered.unfinished] == [entry(1).key, entry(3).key]
    assert recovered.unfinished[0].envelope == entry(1).envelope
    assert run(second.admit([entry(2), entry(1)])) == [False, False], "done and pending survive the restart"
    run(second.close())


def test_an_envelope_kept_as_received_comes_back_as_that_envelope(backend) -> None:
    _, make, _ = backend
    wire = (  # Slack's spacing and escapes, not json.dumps's
        '{"envelope_id": "env-w", "type": "events_api",  "payload": {"event_id": "EvW", "text": "caf\\u00e9 \u2603"}}'
    )
    first = make()
    run(first.open())
    assert run(first.admit([Entry("event:EvW", json.loads(wire), text=wire)])) == [True]
    run(first.close())
    second = make()
    recovered = recover(second)
    expected = [json.loads(wire)] if second.durable else []
    assert [e.envelope for e in recovered.unfinished] == expected
    run(second.close())


def test_sqlite_stores_the_envelope_as_received_without_serialising_it_again(tmp_path: Path) -> None:
    wire = '{"envelope_id": "env-w",  "type": "events_api", "payload": {"event_id": "EvW"}}'
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60)
    run(ledger.open())
    run(ledger.admit([Entry("event:EvW", json.loads(wire), text=wire)]))
    run(ledger.close())
    with contextlib.closing(sqlite3.connect(tmp_path / "ledger.sqlite3")) as db:
        assert db.execute("SELECT envelope FROM events WHERE key = 'event:EvW'").fetchone() == (wire,)


def test_an_event_that_never_finishes_is_given_up_after_max_runs(backend) -> None:
    _, make, _ = backend
    ledger = make()
    if not ledger.durable:
        pytest.skip("only a durable ledger replays")
    run(ledger.open())
    run(ledger.admit([entry(1)]))
    run(ledger.close())
    for runs in range(2, MAX_RUNS + 1):
        ledger = make()
        assert [e.runs for e in recover(ledger).unfinished] == [runs]
        run(ledger.close())
    ledger = make()
    recovered = recover(ledger)
    assert recovered.unfinished == []
    assert [e.key for e in recovered.given_up] == [entry(1).key]
    assert run(ledger.admit([entry(1)])) == [False], "given up counts as done: a late retry is not run"
    run(ledger.close())


def test_sqlite_file_stays_bounded_as_done_entries_are_pruned(tmp_path: Path) -> None:
    clock = Clock()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=60, clock=clock)
    run(ledger.open())
    sizes = []
    for cycle in range(6):
        batch = [entry(cycle * 2000 + n) for n in range(2000)]
        run(ledger.admit(batch))
        run(ledger.finish([e.key for e in batch]))
        clock.now += 61
        run(ledger.prune())
        db = sqlite3.connect(tmp_path / "ledger.sqlite3")
        sizes.append(db.execute("PRAGMA page_count").fetchone()[0])
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        db.close()
    run(ledger.close())
    # 12,000 events went through; the file holds one batch's worth of pages, reused cycle after cycle.
    assert max(sizes) <= sizes[0] * 1.2, f"pages grow with history: {sizes}"


def test_a_corrupt_ledger_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not a database, it is a text file" * 100)
    with pytest.raises(LedgerError, match=r"unusable .*move it aside"):
        run(SqliteLedger(path, ttl_s=60).open())


@pytest.mark.parametrize("where", ["under-a-file", "read-only-filesystem"])
def test_an_unwritable_ledger_location_is_a_clear_error(tmp_path: Path, where: str) -> None:
    # Tests may run as root, for whom file modes are no obstacle: use places nobody can write.
    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "ledger.sqlite3"
    else:
        path = Path("/proc/nonstop-ledger.sqlite3")
    ledger = SqliteLedger(path, ttl_s=60)
    with pytest.raises(LedgerError, match=r"ledger file"):
        run(ledger.open())


@pytest.mark.parametrize(
    ("url", "kind"),
    [("memory://", MemoryLedger), ("sqlite:///x.sqlite3", SqliteLedger), ("sqlite:////tmp/x", SqliteLedger)],
)
def test_a_local_ledger_is_picked_from_the_url(url: str, kind: type) -> None:
    assert isinstance(open_local_ledger(url, 60), kind)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6390/0", "rediss://:secret@redis.example:6380/2?prefix=bot"])
def test_redis_urls_are_understood(url: str) -> None:
    assert parse_ledger_url(url)[0] in ("redis", "rediss")
    with pytest.raises(ValueError, match="shared by replicas"):
        open_local_ledger(url, 60)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://x",
        "sqlite://host/x",
        "sqlite:///",
        "sqlite:///x?synchronous=maybe",
        "redis:///0",
        "redis://h:port/0",
        "redis://h:6379/zero",
        "redis://h:6379/0?pool=3",
    ],
)
def test_a_ledger_url_it_does_not_know_is_refused(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked where settings turn it into a line
        parse_ledger_url(url)


# -- high-water marks (issue 18: catch-up scans each conversation from its mark) ------------------------------


def test_marks_move_only_forward_compared_as_exact_timestamps(backend) -> None:
    _, make, _ = backend
    ledger = make()
    run(ledger.open())
    assert run(ledger.marks()) == {}
    run(ledger.advance_marks({"C1": "1700000000.000100", "C2": "1700000000.999999"}))
    # .000099 < .000100 < .000101, and 1700000001.000000 > 1700000000.999999: by microseconds, not as text or floats
    run(ledger.advance_marks({"C1": "1700000000.000099", "C2": "1700000001.000000", "C3": "1699999999.000001"}))
    assert run(ledger.marks()) == {"C1": "1700000000.000100", "C2": "1700000001.000000", "C3": "1699999999.000001"}
    run(ledger.advance_marks({"C1": "1700000000.000101"}))
    run(ledger.advance_marks({}))
    assert run(ledger.marks())["C1"] == "1700000000.000101"
    run(ledger.close())


def test_marks_survive_a_restart_and_are_never_pruned(backend) -> None:
    name, make, clock = backend
    first = make()
    run(first.open())
    run(first.advance_marks({"C1": "1700000000.000100"}))
    clock.now += 10 * 86400
    run(first.prune())
    assert run(first.marks()) == {"C1": "1700000000.000100"}, "prune() forgets done events, never marks"
    run(first.close())
    second = make()
    recover(second)
    assert run(second.marks()) == ({} if name == "memory" else {"C1": "1700000000.000100"})
    run(second.close())


@pytest.mark.parametrize("bad", ["", "1700000000.1234567", "17e9", "now", "1700000000.00x1", "\u0661\u0667"])
def test_a_mark_that_is_not_a_slack_timestamp_is_refused_and_nothing_is_written(backend, bad: str) -> None:
    _, make, _ = backend
    ledger = make()
    run(ledger.open())
    with pytest.raises(ValueError, match="is not a Slack message ts"):
        run(ledger.advance_marks({"C1": "1700000000.000100", "C2": bad}))
    assert run(ledger.marks()) == {}
    run(ledger.close())


def test_two_concurrent_advances_keep_the_larger_mark(backend) -> None:
    """Two scanners (two replicas on Redis, or two tasks of one process) record marks for the same conversations
    at once, in either order: each conversation ends at the larger of the two."""
    name, make, _ = backend
    a = make()
    run(a.open())
    b = make() if name == "redis" else a  # a second replica on the same Redis; locally, one ledger
    older = {f"C{n}": f"1700000000.{n:06d}" for n in range(200)}
    newer = {f"C{n}": f"1700000001.{n:06d}" for n in range(200)}

    async def race(first: Ledger, second: Ledger, one: dict[str, str], other: dict[str, str]) -> None:
        await asyncio.gather(first.advance_marks(one), second.advance_marks(other))

    for _ in range(5):  # the older ones are sent last: a plain last-writer-wins store would end with them
        run(race(b, a, older, newer))
        run(race(a, b, newer, older))
    assert run(a.marks()) == newer
    assert run(b.marks()) == newer
    run(a.close())


def test_an_entry_is_known_by_its_alias_the_key_an_older_version_wrote(backend) -> None:
    """A mention recorded as event:<id> before mentions were keyed by message (a replica of the older version,
    a ledger written by it): its late retry, keyed app_mention:<channel>:<ts>, is the same event. SQLite looks
    for aliases only in a file an older version wrote: see test_sqlite.py."""
    name, make, _ = backend
    if name == "sqlite":
        pytest.skip("a file this version made holds no older keys")
    ledger = make()
    run(ledger.open())
    run(ledger.admit([entry(1), entry(2)]))
    run(ledger.finish([entry(1).key]))
    again = [Entry(f"app_mention:C1:1700000000.00000{n}", entry(n).envelope, alias=entry(n).key) for n in (1, 2, 3)]
    assert run(ledger.admit(again)) == [False, False, True], "done, pending, and one never seen"
    run(ledger.close())
