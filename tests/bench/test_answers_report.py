"""The answer rows' verdicts follow the issue's targets (bench/answers_report.py). No processes, no timing."""

from __future__ import annotations

from typing import Any

from bench.answers_report import rows


def tally(answered: int, lost: int = 0, twice: int = 0, apologies: int = 0, ratelimited: int = 0) -> dict[str, Any]:
    return {"mentions": answered + lost, "answered": answered, "lost": lost, "twice": twice,
            "apologies": apologies, "ratelimited": ratelimited}  # fmt: skip


def verdicts(answers: dict[str, Any]) -> list[str]:
    return [row[-1] for row in rows({"answers": answers})]


def test_a_doubled_answer_misses_and_a_clean_run_meets() -> None:
    clean = {"stock": tally(45, lost=15), "nonstop": tally(60)}
    doubled = {"stock": tally(45, lost=15), "nonstop": tally(60, twice=1)}
    assert verdicts({"http_503": clean}) == ["met"]
    assert verdicts({"http_503": doubled}) == ["**MISSED**"]


def test_replicas_must_not_draw_more_429s_than_one_process_alone() -> None:
    fewer = {"one": tally(40, ratelimited=3), "three": tally(40, ratelimited=1)}
    more = {"one": tally(40, ratelimited=1), "three": tally(40, ratelimited=3)}
    assert verdicts({"replicas": fewer}) == ["met"]
    assert verdicts({"replicas": more}) == ["**MISSED**"]


def test_the_burst_is_judged_against_twice_the_bare_client() -> None:
    def burst(nonstop: float) -> dict[str, Any]:
        return {"size": 300, "rounds": {"nonstop": [nonstop]},
                "median_s": {"nonstop": nonstop, "asyncio_floor": 0.1, "stock": 0.3}}  # fmt: skip

    assert verdicts({"burst": burst(0.19)}) == ["met"]
    assert verdicts({"burst": burst(0.21)}) == ["**MISSED**"]
