"""The governor: which Web API call may go now, which waits and until when, and which is given up.

Pure and synchronous (Sans-I/O, like `websockets`' protocol objects): it never sleeps, sends or reads a
clock; a driver (`nonstop.outbound.sync`, `nonstop.outbound.aio`) passes `now` in, sends what it is told,
and reports back. The same core therefore serves the threads of a sync `WebClient` and the tasks of an
`AsyncWebClient`, and its tests run on a fake clock.

- **Lanes keep order.** Every call belongs to a lane (a conversation as people see it: a channel, or one
  thread of it; any other call gets a lane of its own). A lane sends one call at a time, lowest `order`
  first (the event it answers, then the answer's place in it), so the answers in one conversation arrive
  in order even when one must be tried again. A busy lane holds up nothing else. Lanes that wait on the
  same bucket get it oldest event first.
- **Buckets keep Slack's limits** (`nonstop.outbound.limits`). At most a burst's worth of a bucket's calls
  are in the air at once, so learning a limit costs at most that many 429s. A bucket is *optimistic* until Slack
  answers its first 429: calls go as fast as they come, because Slack tolerates bursts of unpublished
  size and most traffic never nears a limit. The 429 *engages* it: no call for exactly `Retry-After`,
  then the documented rate and burst. It is forgotten again once it has stayed full for `forget_after_s`
  (the burst that taught it is over). Replicas share a pre-engaged bucket instead (`nonstop.outbound.shared`).
- **Failures wait by the policy** (`nonstop.policy.Schedule`, the same as the links'), and no call waits
  past its deadline: a call whose next chance lies beyond it is given up, and the driver says so.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from nonstop.net.retry import Schedule
from nonstop.outbound.limits import Limit

__all__ = ["Bucket", "Call", "Due", "Governor"]

_LATER = float("inf")

FORGET_AFTER_S = 60.0
"""An engaged bucket that stayed full this long goes back to optimistic [INF: a minute, Slack's own window]."""


@dataclass
class Bucket:
    """One of Slack's limits as this process has learned it."""

    limit: Limit
    engaged: bool = False
    tokens: float = 0.0
    at: float = 0.0  # when `tokens` was counted
    blocked_until: float = 0.0  # Retry-After: nothing before this

    def _count(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.limit.burst, self.tokens + (now - self.at) * self.limit.per_s)
            self.at = now

    def ready_at(self, now: float) -> float:
        """The earliest time a call may draw from this bucket."""
        if not self.engaged:
            return max(now, self.blocked_until)
        self._count(now)
        ready = now if self.tokens >= 1 else now + (1 - self.tokens) / self.limit.per_s
        return max(ready, self.blocked_until)

    def take(self, now: float) -> None:
        if self.engaged:
            self._count(now)
            self.tokens -= 1

    def ratelimited(self, now: float, retry_after_s: float) -> None:
        """Slack said 429: empty, engaged, and closed for exactly `retry_after_s`."""
        self.engaged = True
        self.tokens, self.at = 0.0, now
        self.blocked_until = max(self.blocked_until, now + retry_after_s)

    def stale(self, now: float, forget_after_s: float) -> bool:
        """Nothing learned here matters any more: no block, and (if engaged) full for `forget_after_s`."""
        if now < self.blocked_until:
            return False
        if not self.engaged:
            return True
        full_at = self.at + max(0.0, self.limit.burst - self.tokens) / self.limit.per_s  # before counting moves `at`
        return now - full_at >= forget_after_s


_seq = itertools.count()


@dataclass(eq=False)
class Call:
    """One Web API call on its way out. `key`/`limit`: the bucket its next try draws from (a driver may
    switch it between steps, e.g. a lookup in the history before a post). `job`: the driver's own data."""

    method: str
    lane: str
    order: tuple[float, float]
    deadline: float
    key: str
    limit: Limit
    job: Any = None
    not_before: float = 0.0
    tries: int = 0
    trouble_since: float | None = None  # first failed try: the age of the trouble drives the backoff
    seq: int = field(default_factory=lambda: next(_seq))
    queued: bool = False
    flying: str | None = None  # the bucket it was sent on, while a try is under way

    def sort_key(self) -> tuple[float, float, int]:
        return (*self.order, self.seq)


@dataclass(frozen=True)
class Due:
    """What `Governor.due()` decided: send these now, give these up, and look again at `wake_at` (None: nothing
    waits)."""

    send: list[Call]
    expired: list[Call]
    wake_at: float | None


class Governor:
    """Decides, for every call, "send now", "wait until t" or "give up". Not thread-safe: drivers hold a lock.

    Args:
        schedule: the waits between tries of a call that failed for a passing reason (`nonstop.policy`).
        rng: jitter for those waits.
        forget_after_s: how long an engaged bucket must stay full before it is optimistic again.
    """

    def __init__(
        self,
        *,
        schedule: Schedule | None = None,
        rng: random.Random | None = None,
        forget_after_s: float = FORGET_AFTER_S,
    ) -> None:
        self._schedule = schedule or Schedule()
        self._rng = rng or random.Random()
        self._forget_after_s = forget_after_s
        self._buckets: dict[str, Bucket] = {}
        self._lanes: dict[str, list[tuple[tuple[float, float, int], Call]]] = {}
        self._busy: set[str] = set()
        self._flying: dict[str, int] = {}  # tries under way per bucket
        self._deadlines: list[tuple[float, int, Call]] = []  # queued calls by deadline (stale entries skipped)
        self._heads: dict[str, list[tuple[tuple[float, float, int], Call]]] = {}  # free lanes' heads, by bucket
        self._sleeping: list[tuple[float, int, Call]] = []  # heads backing off, by when they may go
        self._dirty: set[str] = set()  # buckets whose heads `due` must (re)consider
        self._swept_at = 0.0

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Calls queued, not being sent."""
        return sum(len(queue) for queue in self._lanes.values())

    def bucket(self, key: str, limit: Limit) -> Bucket:
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = Bucket(limit)
        return found

    def busy(self, lane: str) -> bool:
        """Whether a call of `lane` is being sent (the lane's next call waits for it)."""
        return lane in self._busy

    def engaged(self, key: str) -> bool:
        found = self._buckets.get(key)
        return found is not None and found.engaged

    # -- deciding --------------------------------------------------------------------------------------

    def submit(self, call: Call, now: float) -> bool:
        """A new call. True: send it now (its lane is now busy until `done`/`again`). False: it waits."""
        if call.lane not in self._busy and not self._lanes.get(call.lane) and self._ready(call, now) <= now:
            self._start(call, now)
            return True
        self._push(call)
        return False

    def queue(self, call: Call) -> None:
        """A new call that must not go on its caller's thread: it waits for `due()`."""
        self._push(call)

    def due(self, now: float) -> Due:
        """Every waiting call whose turn has come (its lane free, its bucket ready, its backoff over), every
        waiting call whose next chance lies past its deadline, and when to look again. The work is per bucket,
        not per waiting call: lanes' heads are kept by bucket, oldest event first."""
        send: list[Call] = []
        expired = self._expire(now)
        wake: float | None = None
        while self._sleeping and self._sleeping[0][0] <= now:
            self._offer_call(heapq.heappop(self._sleeping)[2])
        self._dirty = set(self._heads)
        while self._dirty:
            key = self._dirty.pop()
            heap = self._heads.get(key, [])
            while heap:
                call = heap[0][1]
                if not self._is_head(call) or call.key != key:
                    heapq.heappop(heap)  # stale: sent, requeued or expired since it was offered
                    continue
                if call.not_before > now:  # backing off: out of the way of its bucket's other lanes
                    heapq.heappop(heap)
                    heapq.heappush(self._sleeping, (call.not_before, call.seq, call))
                    continue
                ready = self._ready(call, now)
                if ready <= now:
                    heapq.heappop(heap)
                    self._pop(call.lane)
                    self._start(call, now)
                    send.append(call)
                elif ready == _LATER:
                    break  # the bucket's burst is in the air: looked at again when one of them lands
                elif ready > call.deadline:
                    heapq.heappop(heap)
                    self._pop(call.lane)
                    expired.append(call)
                    self._offer(call.lane)  # the lane's next call gets its chance in this same pass
                else:
                    wake = ready if wake is None else min(wake, ready)
                    break
            if not heap:
                self._heads.pop(key, None)
        for queue in (self._sleeping, self._deadlines):
            if queue:
                wake = queue[0][0] if wake is None else min(wake, queue[0][0])
        self._sweep(now)
        return Due(send, expired, wake)

    def done(self, call: Call) -> None:
        """The call's try is over for good (delivered, refused, or given up by the driver): its lane moves on."""
        self._land(call)
        self._busy.discard(call.lane)
        if not self._lanes.get(call.lane):
            self._lanes.pop(call.lane, None)
        else:
            self._offer(call.lane)

    def again(self, call: Call, at: float) -> bool:
        """Back to the head of its lane, not before `at`. False if `at` lies past its deadline: the call is
        then out of the governor (the driver gives it up) and its lane moves on."""
        self._land(call)
        self._busy.discard(call.lane)
        if at > call.deadline:
            self.done(call)
            return False
        call.not_before = at
        self._push(call)
        return True

    def drop(self, call: Call) -> None:
        """Take a waiting call out (its caller is gone); its lane moves on."""
        if call.queued:
            self._unqueue(call)
        else:
            self.done(call)  # it was the lane's call being sent

    def ratelimited(self, call: Call, now: float, retry_after_s: float) -> bool:
        """Slack answered 429: the bucket learns, and the call tries again exactly `retry_after_s` later."""
        self.bucket(call.key, call.limit).ratelimited(now, retry_after_s)
        return self.again(call, now + retry_after_s)

    def failed(self, call: Call, now: float) -> bool:
        """A try failed for a passing reason: the next one waits by the policy's schedule."""
        if call.trouble_since is None:
            call.trouble_since = now
        return self.again(call, now + self._schedule.wait(now - call.trouble_since, self._rng))

    # -- inside ----------------------------------------------------------------------------------------

    def _ready(self, call: Call, now: float) -> float:
        if self._flying.get(call.key, 0) >= call.limit.burst:
            return _LATER  # the bucket's burst is in the air: its next chance comes when one of them lands
        return max(call.not_before, self.bucket(call.key, call.limit).ready_at(now))

    def _start(self, call: Call, now: float) -> None:
        self.bucket(call.key, call.limit).take(now)
        self._busy.add(call.lane)
        call.tries += 1
        call.flying = call.key
        self._flying[call.key] = self._flying.get(call.key, 0) + 1

    def _land(self, call: Call) -> None:
        key, call.flying = call.flying, None
        if key is not None:
            left = self._flying[key] - 1
            if left:
                self._flying[key] = left
            else:
                del self._flying[key]

    def _push(self, call: Call) -> None:
        heapq.heappush(self._lanes.setdefault(call.lane, []), (call.sort_key(), call))
        heapq.heappush(self._deadlines, (call.deadline, call.seq, call))
        call.queued = True
        self._offer(call.lane)

    def _is_head(self, call: Call) -> bool:
        """Whether `call` waits at the head of a free lane (its turn depends only on its bucket and backoff)."""
        if not call.queued or call.lane in self._busy:
            return False
        queue = self._lanes.get(call.lane)
        return bool(queue) and queue[0][1] is call  # type: ignore[index]

    def _offer(self, lane: str) -> None:
        """A free lane's head may have changed: index it by its bucket (duplicates are skipped in `due`)."""
        queue = self._lanes.get(lane)
        if queue and lane not in self._busy:
            self._offer_call(queue[0][1])

    def _offer_call(self, call: Call) -> None:
        if self._is_head(call):
            heapq.heappush(self._heads.setdefault(call.key, []), (call.sort_key(), call))
            self._dirty.add(call.key)  # a pass of `due` under way looks at this bucket again

    def _pop(self, lane: str) -> None:
        queue = self._lanes[lane]
        heapq.heappop(queue)[1].queued = False
        if not queue and lane not in self._busy:
            del self._lanes[lane]

    def _expire(self, now: float) -> list[Call]:
        """Queued calls whose deadline has passed, wherever they stand in their lane."""
        expired: list[Call] = []
        while self._deadlines and self._deadlines[0][0] < now:
            call = heapq.heappop(self._deadlines)[2]
            if not call.queued or call.deadline >= now:
                continue  # sent or requeued since (a requeued call has a fresh entry)
            self._unqueue(call)
            expired.append(call)
        return expired

    def _unqueue(self, call: Call) -> None:
        queue = self._lanes[call.lane]
        queue.remove((call.sort_key(), call))
        heapq.heapify(queue)
        call.queued = False
        if not queue and call.lane not in self._busy:
            del self._lanes[call.lane]
        else:
            self._offer(call.lane)

    def _sweep(self, now: float) -> None:
        """Drop what no longer teaches anything (stale buckets), at most once a second: memory stays bounded
        by the keys in use, however many channels the bot ever answered in."""
        if now - self._swept_at < 1.0:
            return
        self._swept_at = now
        for key in [k for k, b in self._buckets.items() if b.stale(now, self._forget_after_s)]:
            del self._buckets[key]
