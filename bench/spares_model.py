"""The fault mix's losses worked out in the sandbox's model instead of measured: for each policy of spare links,
the expected number of mentions lost on the fault mix's seeded schedules, and the odds of a run losing none.

Why: a measured fault mix is one draw (bench/zero_loss.py). Whether "none lost" is within reach of some
policy, and what the number of live links costs, needs the expectation over many schedules. Run it with
`python -m bench.spares_model` (a few seconds; no bot, no sandbox).

The model is the sandbox's (docs/sandbox-model.md), with the fault mix's schedule and timings:
- Slack counts a silenced connection as alive for `silent_link_alive_s` (900 s). A TCP reset, and the
  outage (its sockets are reset), end every connection Slack counts, the dead ones included.
- When every link goes silent, the bot suspects them after `detect_s` and then holds as many live links
  as the policy wants, within the 10 Slack counts. Before that, every link it holds is dead. A policy with a
  calm period holds one link until the path has stayed up that long, and one slot (not the target) while
  silences repeat within Slack's memory of dead sockets (`Budget.slots_wanted`); then its slots and one
  spare, and one more spare per ping round (`Silences.spare_wait`).
- An attempt lands on a live connection with probability live / (live + dead): first attempts go
  round-robin and retries at random, the same share on average. While Slack counts no connection (an
  outage), an attempt waits for one up to its 3 s deadline.
- Attempts: the first when the mention is sent; each retry after the previous attempt's 3 s deadline and
  the bench's retry delay (0, 10, 30 s). A mention is lost when all four land on dead connections.
- Warnings and refresh_requested are make-before-break: they change nothing here. Lateness (answered,
  but later than 5 s) is not modelled; the measured rows show it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.procs import BENCH_CONFIG
from bench.silences import ALIVE_S as SILENCES_ALIVE_S
from bench.silences import MENTION_EVERY_S, MENTIONS_FOR_S, SILENCE_GAP_S, SILENCES
from bench.zero_loss import MIX_EVERY_S, MIX_OUTAGE_S, MIX_SEED, fault_schedule
from nonstop.config.settings import SupervisorSettings
from nonstop.links.budget import Budget

LIMIT = Budget().limit
ACK_DEADLINE_S = BENCH_CONFIG.ack_deadline_s
RETRY_DELAYS_S = BENCH_CONFIG.retry_delays_s
ALIVE_S = BENCH_CONFIG.silent_link_alive_s
PING_INTERVAL_S = SupervisorSettings().ping_interval_s
PONG_TIMEOUT_S = SupervisorSettings().pong_timeout_s
DETECT_S = tuple(PONG_TIMEOUT_S + PING_INTERVAL_S * (i + 0.5) / 5 for i in range(5))
"""When the bot suspects a silence: the next ping, somewhere in the interval, plus the pong timeout. The
outcome is averaged over these five points of the interval."""
RECONNECT_AFTER_OUTAGE_S = 1.0  # the policy's one try a second (nonstop/net/retry.py): ~0.5 s on average

Wanted = Callable[[int, int], int]  # (slot links, dead connections Slack counts) -> live links wanted


@dataclass(frozen=True)
class Policy:
    live: Wanted
    calm_s: float = 0.0  # after a silence, one link until the path has stayed up this long (0: all at once)
    one_while_repeating: bool = False  # one slot link while a silence came with earlier dead still counted
    calm_links: int = 1  # links held during the calm period (at most the target)
    spare_round_s: float = 0.0  # after the calm, one more spare per this many seconds (0: all at once)


ROUND_S = PING_INTERVAL_S + PONG_TIMEOUT_S  # a ping round: Nonstop opens one spare per round after the calm
POLICIES: dict[str, Policy] = {
    "Nonstop (Budget, Silences)": Policy(
        lambda target, dead: Budget().live_wanted(target, dead),
        SupervisorSettings().spare_calm_s,
        one_while_repeating=True,
        spare_round_s=ROUND_S,
    ),
    "spares at once (before issue 18)": Policy(lambda target, dead: Budget().live_wanted(target, dead)),
    "no spare links": Policy(lambda target, dead: target),
    "the whole budget": Policy(lambda target, dead: LIMIT - dead if dead else target),
}


@dataclass(frozen=True)
class Span:
    begin: float
    live: int
    dead: int  # dead connections Slack counts (each one's 900 s is checked where the span starts)
    outage_end: float | None = None  # while Slack counts nothing: when a connection comes back


@dataclass
class _Path:
    target: int
    policy: Policy
    alive_s: float
    live: int
    dead_since: list[float] = field(default_factory=list)
    grow_at: float | None = None  # when the next link opens (the calm's end, then one per round)
    repeating: bool = False

    def dead(self, t: float) -> int:
        return len([d for d in self.dead_since if d + self.alive_s > t])

    @property
    def slots(self) -> int:
        return 1 if self.repeating and self.policy.one_while_repeating else self.target

    def wanted(self, t: float) -> int:
        return max(0, min(self.policy.live(self.slots, self.dead(t)), LIMIT - self.dead(t)))

    def grow_until(self, t: float, out: list[Span]) -> None:
        """The links that open after the calm, before `t`: the slots and a spare, then a spare per round."""
        while self.grow_at is not None and self.grow_at < t:
            at, wanted, paced = self.grow_at, self.wanted(self.grow_at), self.policy.spare_round_s > 0
            self.live = min(wanted, max(self.live, self.slots) + 1) if paced else wanted
            out.append(Span(at, self.live, self.dead(at)))
            self.grow_at = at + self.policy.spare_round_s if paced and self.live < wanted else None


def spans(faults: list[tuple[float, str]], target: int, policy: Policy, detect_s: float, alive_s: float) -> list[Span]:
    """What Slack counts, live and dead, from each fault on: one span per change."""
    out = [Span(0.0, target, 0)]
    path = _Path(target, policy, alive_s, live=target)
    for at, fault in faults:
        path.grow_until(at + 1e-9, out)  # what opened before the fault (at the same instant too)
        path.grow_at = None
        if fault in ("reset", "outage"):
            path.dead_since, path.live, path.repeating = [], target, False
            if fault == "outage":
                back = at + MIX_OUTAGE_S + RECONNECT_AFTER_OUTAGE_S / 2
                out += [Span(at, 0, 0, outage_end=back), Span(back, target, 0)]
            else:
                out.append(Span(at, target, 0))
        elif fault == "silence":
            path.dead_since = [t for t in path.dead_since if t + alive_s > at]
            path.repeating = bool(path.dead_since)  # Slack still counts dead sockets of an earlier silence
            path.dead_since += [at] * path.live
            out.append(Span(at, 0, path.dead(at)))
            seen = at + detect_s
            if policy.calm_s > 0:
                path.live = max(0, min(policy.calm_links, path.slots, LIMIT - path.dead(seen)))
                path.grow_at = seen + policy.calm_s
            else:
                path.live = path.wanted(seen)
            out.append(Span(seen, path.live, path.dead(seen)))
    path.grow_until(math.inf, out)
    return out


def _at(timeline: list[Span], t: float) -> Span:
    found = timeline[0]
    for span in timeline:
        if span.begin > t:
            break
        found = span
    return found


def p_dead(timeline: list[Span], t: float) -> float:
    """The chance that an attempt made at `t` reaches no live connection."""
    span = _at(timeline, t)
    if span.outage_end is not None:
        return 0.0 if span.outage_end <= t + ACK_DEADLINE_S else 1.0
    if span.live + span.dead == 0:
        return 1.0
    return span.dead / (span.live + span.dead)


def p_lost(timeline: list[Span], sent: float) -> float:
    """The chance that a mention sent at `sent` is lost: every attempt reaches no live connection."""
    p, t = p_dead(timeline, sent), sent
    for delay in RETRY_DELAYS_S:
        t += ACK_DEADLINE_S + delay
        p *= p_dead(timeline, t)
    return p


@dataclass(frozen=True)
class Outcome:
    expected_lost: float
    p_none_lost: float


def outcome(seed: int, duration_s: float, target: int, policy: Policy, alive_s: float = ALIVE_S) -> Outcome:
    lost, none = 0.0, 0.0
    for detect_s in DETECT_S:
        timeline = spans(fault_schedule(seed, duration_s), target, policy, detect_s, alive_s)
        ps = [p_lost(timeline, i * MIX_EVERY_S) for i in range(round(duration_s / MIX_EVERY_S))]
        lost += sum(ps) / len(DETECT_S)
        none += math.prod(1 - p for p in ps) / len(DETECT_S)
    return Outcome(lost, none)


def three_silences(policy: Policy, target: int = 2, gap_s: float = SILENCE_GAP_S) -> float:
    """Expected mentions lost in bench/silences.py's scenario: every link silent three times `gap_s` apart, dead
    sockets counted for 10 minutes, then a mention every 0.5 s for 60 s from the third silence on."""
    faults = [(i * gap_s, "silence") for i in range(SILENCES)]
    first = (SILENCES - 1) * gap_s
    sent = [first + i * MENTION_EVERY_S for i in range(round(MENTIONS_FOR_S / MENTION_EVERY_S))]
    lost = 0.0
    for detect_s in DETECT_S:
        timeline = spans(faults, target, policy, detect_s, SILENCES_ALIVE_S)
        lost += sum(p_lost(timeline, t) for t in sent) / len(DETECT_S)
    return lost


def table(seeds: range, duration_s: float, seed: int, alive_s: float) -> str:
    rows = [
        f"| policy | links | expected lost per run, {len(seeds)} schedules | runs losing none | "
        f"seed {seed}: expected lost | seed {seed}: odds of none lost | three silences 8 s apart: expected "
        "lost of 120 | 12 s apart |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, policy in POLICIES.items():
        for target in (1, 2):
            many = [outcome(s, duration_s, target, policy, alive_s) for s in seeds]
            one = outcome(seed, duration_s, target, policy, alive_s)
            mean = sum(o.expected_lost for o in many) / len(many)
            none = sum(o.p_none_lost for o in many) / len(many)
            three = [three_silences(policy, target, gap) for gap in (SILENCE_GAP_S, 12.0)]
            rows.append(
                f"| {name} | {target} | {mean:.2f} | {none:.0%} | {one.expected_lost:.2f} | {one.p_none_lost:.0%} | "
                f"{three[0]:.1f} | {three[1]:.1f} |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=200, help="seeded schedules to average over")
    parser.add_argument("--seed", type=int, default=MIX_SEED, help="the schedule shown on its own")
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of mentions (the fault mix: 240)")
    parser.add_argument("--alive", type=float, default=ALIVE_S, help="seconds Slack counts a silent link (900)")
    a = parser.parse_args()
    print(table(range(1, a.schedules + 1), a.duration, a.seed, a.alive))


if __name__ == "__main__":
    main()
