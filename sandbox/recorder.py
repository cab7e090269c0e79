"""Thread-safe store of everything observed, with a condition variable for waiting."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sandbox.records import ApiCall, ConnectionInfo, DeliveryRecord

T = TypeVar("T")


class Recorder:
    """Written by the loop thread, read by any thread. Readers get snapshots."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._cond = threading.Condition(self.lock)
        self._generation = 0
        self.calls: list[ApiCall] = []
        self.connections: dict[str, ConnectionInfo] = {}
        self.deliveries: dict[str, DeliveryRecord] = {}
        self.by_envelope: dict[str, DeliveryRecord] = {}
        self._call_listeners: list[Callable[[ApiCall], None]] = []

    # --- writers (loop thread); callers hold no lock -----------------------------------------
    def changed(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def add_call_listener(self, fn: Callable[[ApiCall], None]) -> None:
        with self.lock:
            self._call_listeners.append(fn)

    def remove_call_listener(self, fn: Callable[[ApiCall], None]) -> None:
        with self.lock:
            if fn in self._call_listeners:
                self._call_listeners.remove(fn)

    def call_answered(self, call: ApiCall) -> None:
        with self.lock:
            listeners = list(self._call_listeners)
            snap = call.snapshot()
        self.changed()
        for fn in listeners:
            with contextlib.suppress(Exception):  # a listener must never break the server
                fn(snap)

    # --- readers ------------------------------------------------------------------------------
    def wait(self, check: Callable[[], T | None], timeout: float, describe: Callable[[], str]) -> T:
        """Return check()'s first truthy value; check runs without the lock held."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                generation = self._generation
            result = check()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {describe()}")
            with self._cond:
                if self._generation == generation:
                    self._cond.wait(min(remaining, 0.25))
