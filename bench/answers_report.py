"""Table rows for the answer path (`results["answers"]`, see bench/answers.py)."""

from __future__ import annotations

from typing import Any

from bench.answers import BUSY, ELSEWHERE, FAILING, IN_FLIGHT, REPLICA_MENTIONS, UNSURE

ELSEWHERE_TARGET_S = 2.0
BUSY_TARGET_S = 48.0
RATELIMITED_TARGET = 5
FLOOR_RATIO_TARGET = 2.0


def _s(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def _tally(r: dict[str, Any]) -> str:
    """answered / lost / twice, apologies."""
    return f"{r['answered']} / {r['lost']} / {r['twice']}, {r['apologies']} apologies"


def _measured(title: str, r: dict[str, Any]) -> list[str]:
    """A Nonstop-only row with no target of its own: what the README's guarantee promises, measured."""
    return [title, "", _tally(r), "", "as the README's guarantee says", "measured"]


def _clean(r: dict[str, Any]) -> bool:
    return r["answered"] == r["mentions"] and r["lost"] == 0 and r["twice"] == 0 and r["apologies"] == 0


def rows(results: dict[str, Any]) -> list[list[str]]:
    a = results.get("answers", {})
    out: list[list[str]] = []
    limit = a.get("at_the_limit", {})
    if "stock" in limit and "nonstop" in limit:
        s, n = limit["stock"], limit["nonstop"]
        ok = (
            _clean(n) and n["ratelimited"] <= RATELIMITED_TARGET and (n["all_answered_after_s"] or 1e9) <= BUSY_TARGET_S
        )
        out.append([
            f"{BUSY} mentions at once in one channel at Slack's posting limit (1/s, bursts of 4): answered / lost / "
            "twice; all answered after; 429s Slack saw",
            f"{_tally(s)}; {_s(s['all_answered_after_s'])}; {s['ratelimited']}",
            f"{_tally(n)}; {_s(n['all_answered_after_s'])}; {n['ratelimited']}",
            "",
            f"all once, no apology, ≈ {BUSY_TARGET_S:g} s, ≤ {RATELIMITED_TARGET} 429s",
            _verdict(ok),
        ])  # fmt: skip
        late = [max((v for v in r["elsewhere"]["latencies_s"] if v is not None), default=None) for r in (s, n)]
        ok = n["elsewhere"]["answered"] == ELSEWHERE and late[1] is not None and late[1] <= ELSEWHERE_TARGET_S
        out.append([
            f"Meanwhile {ELSEWHERE} mentions in another channel: answered, slowest answer",
            f"{s['elsewhere']['answered']}, {_s(late[0])}",
            f"{n['elsewhere']['answered']}, {_s(late[1])}",
            "",
            f"each within {ELSEWHERE_TARGET_S:g} s",
            _verdict(ok),
        ])  # fmt: skip
    failing = a.get("http_503", {})
    if "stock" in failing and "nonstop" in failing:
        s, n = failing["stock"], failing["nonstop"]
        out.append([
            f"{FAILING} mentions, every 4th post refused 503 (nothing posted): answered / lost / twice",
            _tally(s), _tally(n), "", f"{FAILING} of {FAILING}, none twice, no apology", _verdict(_clean(n)),
        ])  # fmt: skip
    unsure = a.get("internal_error", {})
    if "stock" in unsure and "nonstop_history" in unsure:
        s, n = unsure["stock"], unsure["nonstop_history"]
        out.append([
            f"{UNSURE} mentions, every 4th post answered 500 after Slack posted it, history scopes granted: "
            "answered / lost / twice",
            _tally(s), _tally(n), "", f"{UNSURE} of {UNSURE}, none twice, no apology", _verdict(_clean(n)),
        ])  # fmt: skip
        for choice in ("repost", "skip"):
            r = unsure.get(f"nonstop_{choice}")
            if r is not None:
                maybe = "maybe twice" if choice == "repost" else "maybe never"
                out.append(_measured(f"The same without history scopes, NONSTOP_UNSURE_ANSWER={choice} ({maybe})", r))
    crash = a.get("crash_in_flight", {})
    if "stock" in crash and "nonstop_history" in crash:
        s, n = crash["stock"], crash["nonstop_history"]
        out.append([
            f"SIGKILL with {IN_FLIGHT} replies in flight (Slack holds them), same command restarted, history scopes: "
            "answered / lost / twice",
            _tally(s), _tally(n), "", "none twice", _verdict(n["lost"] == 0 and n["twice"] == 0),
        ])  # fmt: skip
        bare = crash.get("nonstop_no_history")
        if bare is not None:
            out.append(
                _measured("The same without history scopes (the ledger runs each event again: at least once)", bare)
            )
    reps = a.get("replicas", {})
    if "one" in reps and "three" in reps:
        one, three = reps["one"], reps["three"]
        out.append([
            f"{REPLICA_MENTIONS} mentions in one channel at the posting limit, Nonstop alone vs 3 replicas on Redis: "
            "answered / lost / twice; 429s Slack saw",
            f"alone: {_tally(one)}; {one['ratelimited']}",
            f"3 replicas: {_tally(three)}; {three['ratelimited']}",
            "",
            "all once; 429s (three) ≤ 429s (alone)",
            _verdict(_clean(three) and three["ratelimited"] <= one["ratelimited"]),
        ])  # fmt: skip
    burst = a.get("burst", {})
    if burst:
        m = burst["median_s"]
        floor, nonstop, stock = m.get("asyncio_floor"), m.get("nonstop"), m.get("stock")
        ratio = nonstop / floor if nonstop and floor else None
        out.append([
            f"{burst['size']} mentions at once, posting limits off: every one answered after (median of "
            f"{len(burst['rounds']['nonstop'])}); a bare asyncio client: {_s(floor)}",
            _s(stock),
            _s(nonstop),
            f"{ratio:.1f}x the bare client" if ratio else "n/a",
            f"≤ {FLOOR_RATIO_TARGET:g}x the bare client",
            _verdict(ratio is not None and ratio <= FLOOR_RATIO_TARGET),
        ])  # fmt: skip
    return out
