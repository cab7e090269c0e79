"""The split prototype (bench/split_prototype.py) and its evaluation's helpers (bench/split_eval.py).

The message framing and the helpers without processes; then the prototype itself against a sandbox, for the
crash semantics docs/decisions.md states: events acked by the I/O process run in a listener process started
after the first one died, and after both died, from the ledger at the next start."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import psutil
import pytest

from bench.procs import SPLIT, Lane
from bench.split_eval import rotated, spread
from bench.split_prototype import ACK, EVENT, FINISHED, Unpacker, pack
from sandbox import Delivery

# --- the framing between the two processes ---------------------------------------------------------------


def test_messages_come_out_whole_however_the_stream_is_cut() -> None:
    messages = [
        (EVENT, "event:Ev1", '{"text": "two\\nlines", "emoji": "ü 🎉"}'),
        (FINISHED, "event:Ev1", ""),
        (ACK, "env-2", "line one\nline two"),
    ]
    stream = b"".join(pack(*m) for m in messages)
    unpacker = Unpacker()
    got = [m for i in range(len(stream)) for m in unpacker.feed(stream[i : i + 1])]
    assert got == messages


def test_a_message_is_held_until_its_last_byte_arrives() -> None:
    data = pack(EVENT, "event:Ev9", "x" * 100)
    unpacker = Unpacker()
    assert unpacker.feed(data[:-1]) == []
    assert unpacker.feed(data[-1:]) == [(EVENT, "event:Ev9", "x" * 100)]
    assert unpacker.feed(b"") == []


def test_rounds_rotate_so_each_bot_goes_first_once() -> None:
    names = ["a", "b", "c"]
    firsts = [rotated(names, r)[0] for r in range(3)]
    assert firsts == ["a", "b", "c"]
    assert sorted(rotated(names, 4)) == names
    assert rotated([], 2) == []


def test_spread_leaves_out_what_was_not_measured() -> None:
    assert spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([None]) == {"median": None, "min": None, "max": None}


# --- the prototype against a sandbox ---------------------------------------------------------------------


@pytest.fixture
def split() -> Iterator[Lane]:
    lane = Lane(SPLIT, "test-split")
    lane.start()
    try:
        assert lane.wait_live(30), lane.log_tail()
        lane.sb.wait_until(lambda: len(lane.live()) >= 2, timeout=20, what="both links live")
        yield lane
    finally:
        lane.stop()


def _listener_process(lane: Lane) -> psutil.Process:
    children = lane.sb.wait_until(lambda: lane.ps().children(), timeout=20, what="a listener process")
    assert len(children) == 1
    return children[0]


def _answers(lane: Lane, ds: list[Delivery]) -> list[int]:
    counts = lane.sb.handled_counts()
    return [counts.get(d.event_id or "", 0) for d in ds]


def _acked(lane: Lane, ds: list[Delivery]) -> bool:
    return all(lane.sb.delivery(d).acked_at is not None for d in ds)


def _gone(proc: psutil.Process) -> bool:
    """Ended (a zombie waiting for whoever adopted it counts: it runs nothing)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_mentions_and_commands_are_answered(split: Lane) -> None:
    sb = split.sb
    ds = sb.mentions([f"ping {i}" for i in range(5)])
    sb.wait_until(lambda: _answers(split, ds) == [1] * 5, timeout=20, what="five replies")
    ack = sb.wait_for_ack(sb.slash_command("ping"), timeout=5)
    assert "pong" in str(ack.payload)
    assert not ack.late


def test_events_acked_while_the_listener_process_dies_run_in_the_next_one(split: Lane) -> None:
    sb = split.sb
    first = _listener_process(split)
    os.kill(first.pid, signal.SIGSTOP)  # it takes nothing from its socket any more: nothing can run
    ds = sb.mentions([f"ping frozen {i}" for i in range(5)])
    sb.wait_until(lambda: _acked(split, ds), timeout=10, what="acked by the I/O process")
    assert _answers(split, ds) == [0] * 5
    os.kill(first.pid, signal.SIGKILL)
    sb.wait_until(lambda: _answers(split, ds) == [1] * 5, timeout=30, what="run by the next listener process")
    assert _listener_process(split).pid != first.pid


def test_events_acked_when_both_processes_die_run_at_the_next_start(split: Lane) -> None:
    sb = split.sb
    listener = _listener_process(split)
    os.kill(listener.pid, signal.SIGSTOP)
    ds = sb.mentions([f"ping crash {i}" for i in range(5)])
    sb.wait_until(lambda: _acked(split, ds), timeout=10, what="acked by the I/O process")
    split.kill()  # SIGKILL the I/O process
    os.kill(listener.pid, signal.SIGKILL)
    sb.wait_until(lambda: _gone(listener), timeout=10, what="the listener process gone")
    split.respawn()  # the same working directory: the same SQLite ledger
    sb.wait_until(lambda: _answers(split, ds) == [1] * 5, timeout=30, what="run again after the restart")


def test_the_listener_process_ends_with_the_io_process(split: Lane) -> None:
    listener = _listener_process(split)
    split.kill()
    split.sb.wait_until(lambda: _gone(listener), timeout=10, what="the listener process gone")
