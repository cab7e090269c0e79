"""bench/run.py --baseline: the "before" bot's command and the report's before column. No processes, no timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import procs
from bench.report import as_before, before_key, with_before


def test_the_baseline_takes_nonstops_place_wherever_both_are_kept() -> None:
    results = {
        "idle": {"stock": 1, "nonstop": 2, "before": 3},
        "burst": {"one by one": {"stock": 10, "nonstop": 20, "floor": 5, "before": 30}},
        "zero_loss": {
            "ledger": {"at once": {"sqlite": 4, "memory": 5, before_key("sqlite"): 6, before_key("memory"): 7}},
            "soak": {"rss": 40},
            before_key("soak"): {"rss": 41},
        },
        "notes": [{"nonstop": "n", "before": "b"}],
    }
    got = as_before(results)
    assert got["idle"] == {"stock": 1, "nonstop": 3, "before": 3}
    assert got["burst"]["one by one"]["nonstop"] == 30
    assert got["burst"]["one by one"]["floor"] == 5
    assert got["zero_loss"]["ledger"]["at once"]["sqlite"] == 6
    assert got["zero_loss"]["ledger"]["at once"]["memory"] == 7
    assert got["zero_loss"]["soak"] == {"rss": 41}
    assert got["notes"] == [{"nonstop": "b", "before": "b"}]
    assert results["idle"]["nonstop"] == 2  # the results themselves are left as they were


def test_nonstop_stays_where_the_baseline_has_no_measurement() -> None:
    results = {"idle": {"stock": 1, "nonstop": 2}, "soak": {"rss": 40}}
    assert as_before(results) == results


def test_the_before_column_goes_by_label_and_occurrence() -> None:
    after = [
        ["fault", "9 s", "5 ms", "ratio", "target", "met"],
        ["floor", "", "", "", "(calibration)", "1 ms"],
        ["floor", "", "", "", "(calibration)", "2 ms"],
        ["only after", "x", "y", "", "", ""],
    ]
    before = [
        ["floor", "", "b-floor-1", "", "(calibration)", "1 ms"],
        ["fault", "9 s", "6 ms", "ratio", "target", "met"],
        ["floor", "", "b-floor-2", "", "(calibration)", "2 ms"],
    ]
    assert with_before(after, before) == [
        ["fault", "9 s", "6 ms", "5 ms", "ratio", "target", "met"],
        ["floor", "", "b-floor-1", "", "", "(calibration)", "1 ms"],
        ["floor", "", "b-floor-2", "", "", "(calibration)", "2 ms"],
        ["only after", "x", "n/a", "y", "", "", ""],
    ]


@pytest.fixture
def no_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs, "_baseline", None)


@pytest.mark.usefixtures("no_baseline")
def test_the_before_bot_runs_the_baselines_app(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a baseline"):
        procs.command(procs.BEFORE)
    with pytest.raises(ValueError, match="not a checkout"):
        procs.use_baseline(tmp_path)
    (tmp_path / "app.py").write_text("")
    (tmp_path / "nonstop").mkdir()
    procs.use_baseline(tmp_path)
    assert procs.command(procs.BEFORE)[1:] == [str(tmp_path.resolve() / "app.py")]
    assert procs.command("nonstop")[1:] == [str(procs.REPO / "app.py")]
    assert procs.links_wanted(procs.BEFORE) == procs.links_wanted("nonstop") == 2
