"""The burst rows' guard against the harness's own garbage collector: the sandbox that times the acks runs in
the bench's process, so a collection there must not fall inside a burst. No processes, no timing."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bench.scenarios import harness_collector_off


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector_on")
def test_the_collector_is_off_inside_and_back_on_after() -> None:
    with harness_collector_off():
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_the_collector_comes_back_on_when_the_burst_fails() -> None:
    with pytest.raises(RuntimeError), harness_collector_off():
        raise RuntimeError("the bot never became live")
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_garbage_from_before_the_burst_is_collected_first() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.disable()  # so only harness_collector_off's own collection can free the cycle
    dead = Cycle()
    collected: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected.append(info["collected"])

    del dead
    gc.callbacks.append(count)
    try:
        with harness_collector_off():
            pass
    finally:
        gc.callbacks.remove(count)
    assert sum(collected) >= 1


def test_a_collector_the_caller_had_turned_off_stays_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        with harness_collector_off():
            pass
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
