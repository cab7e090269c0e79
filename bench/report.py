"""The machine line and the markdown table, from the results dict `bench/run.py` collects."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import answers_report, zero_loss_report
from bench.procs import BEFORE
from bench.scenarios import BURST_TITLES, FAULT_TITLES, FAULTS, OUTAGE_STAGGER_S, median_or_none

THREADS_SLACK = 2  # "flat": at most this many more threads after the cycles than before
RSS_SLACK_MB = 5.0  # and at most this much more resident memory


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_state(repo: Path) -> dict[str, Any]:
    """The commit measured, and which files of the bot differed from it (others edit the tree concurrently)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return ""
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "app.py", "nonstop", "listeners", "sandbox")
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": dirty.splitlines()}


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "slack_bolt": _pkg("slack_bolt"),
        "slack_sdk": _pkg("slack_sdk"),
    }


def save_run(
    results: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
    out: Path,
    prefix: str,
    *,
    started: dt.datetime,
    t0: float,
) -> Path:
    """Finish a run of one of the evaluation scripts: the load after it, its wall time and its table into
    `results`, all of it to `out/<prefix>-<time>.json`, the table to stdout; the file's path."""
    results["load_after"] = os.getloadavg()
    results["wall_s"] = round(time.monotonic() - t0, 1)
    results["table"] = render(results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{prefix}-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(results["table"])
    return path


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['os']}, "
        f"slack_bolt {m['slack_bolt']}, slack_sdk {m['slack_sdk']}"
    )


# --- formatting ------------------------------------------------------------------------------------------


def secs(value: float | None, cap: float | None = None) -> str:
    if value is None:
        return f"never (> {cap:g} s)" if cap is not None else "n/a"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.0095 else f"{value * 1000:.1f} ms"
    return f"{value:.1f} s"


def faster(stock: float | None, nonstop: float | None, cap: float) -> str:
    """stock ÷ Nonstop for durations (bigger = Nonstop faster)."""
    if nonstop is None:
        return "Nonstop never" if stock is not None else "both never"
    floor = max(nonstop, 0.0005)  # a sub-millisecond reconnect: do not divide by ~0
    if stock is None:
        return f"> {cap / floor:,.0f}x faster"
    ratio = stock / floor
    if ratio >= 1:
        return f"{ratio:,.0f}x faster" if ratio >= 10 else f"{ratio:.2f}x faster"
    return f"{1 / ratio:.2f}x slower"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**MISSED**")


def _le(a: float | None, b: float | None) -> bool:
    """a ≤ b where None means never (infinitely long)."""
    if a is None:
        return b is None
    return b is None or a <= b


# --- the table ------------------------------------------------------------------------------------------


def rows(results: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    cap = results["profile"]["cap_s"]
    fa = results.get("faults", {})
    abs_target = {"reset": 1.0, "eof": 1.0, "silence": 10.0, "close_1001": 1.0, "outage": 10.0}
    target_text = {
        "reset": "≤ 1 s and ≤ stock",
        "eof": "≤ 1 s and ≤ stock",
        "silence": "≤ 10 s and ≤ stock",
        "close_1001": "≤ 1 s and ≤ stock",
        "refresh": "≤ stock (make before break)",
        "outage": "≤ 10 s (one backoff cap) and ≤ stock",
    }
    for fault in FAULTS:
        if fault not in fa.get("stock", {}) or fault not in fa.get("nonstop", {}):
            continue
        s, n = fa["stock"][fault], fa["nonstop"][fault]
        count = min(len(s["samples"]), len(n["samples"]))
        what = FAULT_TITLES[fault]
        if fault == "outage":
            low = results["profile"]["outage_s"]
            high = low + (results["profile"]["fault_lanes"] - 1) * OUTAGE_STAGGER_S
            what = f"Web API down {low:g} to {high:g} s: back → new live connection"
        else:
            what = f"{what}: fault → new live connection"
        label = f"{what} (median of {count}, range)" if count > 1 else f"{what} (1 sample)"
        ok = _le(n["median_s"], s["median_s"])
        if fault in abs_target:
            ok = ok and n["median_s"] is not None and n["median_s"] <= abs_target[fault]
        out.append([
            label,
            _with_never(s, cap),
            _with_never(n, cap),
            faster(s["median_s"], n["median_s"], cap),
            target_text[fault],
            verdict(ok),
        ])  # fmt: skip
    cpu = results.get("recovery_cpu", {})
    for fault in ("reset", "eof"):
        s_cpu, n_cpu = cpu.get("stock", {}).get(fault), cpu.get("nonstop", {}).get(fault)
        if s_cpu and n_cpu:
            out.append([
                f"CPU time of the bot from fault to new live connection, {FAULT_TITLES[fault].split(',')[0]} "
                "(median; share of one core over that time)",
                _cpu_time(s_cpu),
                _cpu_time(n_cpu),
                "",
                "(info)",
                "",
            ])  # fmt: skip
    mixed = results.get("mixed")
    if mixed:
        s, n = mixed["by_kind"]["stock"], mixed["by_kind"]["nonstop"]
        events = mixed["events"]
        label = (
            f"Mixed run ({events} mentions over {mixed['duration_s']:g} s; reset, silence, refresh, lost acks): "
            "answered once / lost / duplicated"
        )
        out.append([
            label,
            f"{s['answered_once']} / {s['lost']} / {s['duplicated']}",
            f"{n['answered_once']} / {n['lost']} / {n['duplicated']}",
            f"lost {s['lost']} vs {n['lost']}, duplicated {s['duplicated']} vs {n['duplicated']}",
            f"{events} / 0 / 0",
            verdict(n["lost"] == 0 and n["duplicated"] == 0 and n["answered_once"] == events),
        ])  # fmt: skip
        out.append([
            "Mixed run: answered within 5 s / mention → reply p50 / p99",
            f"{s['answered_within_5s']} / {secs(s['reply_delay_p50_s'])} / {secs(s['reply_delay_p99_s'])}",
            f"{n['answered_within_5s']} / {secs(n['reply_delay_p50_s'])} / {secs(n['reply_delay_p99_s'])}",
            f"p50 {faster(s['reply_delay_p50_s'], n['reply_delay_p50_s'], cap)}",
            "≤ stock",
            verdict(
                n["answered_within_5s"] >= s["answered_within_5s"]
                and _le(n["reply_delay_p50_s"], s["reply_delay_p50_s"])
                and _le(n["reply_delay_p99_s"], s["reply_delay_p99_s"])
            ),
        ])  # fmt: skip
    for shape, b in (results.get("burst") or {}).items():
        s, n = b["stock"], b["nonstop"]
        count = s["count"]
        each = f"{s['rounds']} bursts" if s["rounds"] > 1 else "1 burst"
        how = f"{count} mentions {BURST_TITLES[shape]} ({each}, pooled)"
        out.append([
            f"Ack latency, {how}: p50",
            secs(s["ack_p50_s"]),
            secs(n["ack_p50_s"]),
            faster(s["ack_p50_s"], n["ack_p50_s"], cap),
            "≤ stock",
            verdict(_le(n["ack_p50_s"], s["ack_p50_s"])),
        ])  # fmt: skip
        out.append([
            f"Ack latency, {how}: p99",
            secs(s["ack_p99_s"]),
            secs(n["ack_p99_s"]),
            faster(s["ack_p99_s"], n["ack_p99_s"], cap),
            "≤ 50 ms and ≤ stock",
            verdict(n["ack_p99_s"] is not None and n["ack_p99_s"] <= 0.050 and _le(n["ack_p99_s"], s["ack_p99_s"])),
        ])  # fmt: skip
        floor = b.get("floor")
        if floor:
            out.append([
                "Ack latency, same bursts: harness floor (bare client: ack at once, then reply) p50 / p99",
                "",
                "",
                "",
                "(calibration)",
                f"{secs(floor['ack_p50_s'])} / {secs(floor['ack_p99_s'])}",
            ])  # fmt: skip
        out.append([
            f"All {count} burst mentions answered after (median of the bursts)",
            secs(s["all_answered_after_s"]),
            secs(n["all_answered_after_s"]),
            faster(s["all_answered_after_s"], n["all_answered_after_s"], cap),
            "(info)",
            "",
        ])  # fmt: skip
    dl = results.get("dead_links")
    if dl:
        s, n = dl["stock"], dl["nonstop"]

        def share(r: dict[str, Any], key: str) -> str:
            return f"{r[key]} of {r['sample']}" if r["sample"] else "no sample"

        out.append([
            "Every link silent at once: fault → new live connection",
            secs(s["replaced_after_s"]),
            secs(n["replaced_after_s"]),
            faster(s["replaced_after_s"], n["replaced_after_s"], cap),
            "≤ 3 s",
            verdict(n["replaced_after_s"] is not None and n["replaced_after_s"] <= 3.0),
        ])  # fmt: skip
        out.append([
            "Then: of events sent into a dead socket, answered on Slack's first retry / by its second "
            "(live of the connections Slack counts)",
            f"{share(s, 'first_retry')} / {share(s, 'by_second_retry')} ({s.get('live_here', '?')} of "
            f"{s.get('slack_counted', '?')})",
            f"{share(n, 'first_retry')} / {share(n, 'by_second_retry')} ({n.get('live_here', '?')} of "
            f"{n.get('slack_counted', '?')})",
            "",
            "≥ 14 of 20 / ≥ 18 of 20",
            verdict(
                n["sample"] > 0
                and n["first_retry"] >= 0.7 * n["sample"]
                and n["by_second_retry"] >= 0.9 * n["sample"]
            ),
        ])  # fmt: skip
    so = results.get("short_outages")
    if so:
        s, n = so["stock"], so["nonstop"]
        rounds = len(n["back_after_s"])
        out.append([
            f"Short outage recovery: Web API back → new live connection, worst of {rounds} 8 s outages "
            "(apps.connections.open calls per second during the outage, most)",
            f"{secs(s['worst_s'])} ({s['max_opens_per_s']:.1f}/s)",
            f"{secs(n['worst_s'])} ({n['max_opens_per_s']:.1f}/s)",
            faster(s["worst_s"], n["worst_s"], cap),
            "≤ 2 s, ≤ ~1 call/s",
            verdict(n["worst_s"] is not None and n["worst_s"] <= 2.0 and n["max_opens_per_s"] <= 1.25),
        ])  # fmt: skip
    idle = results.get("idle")
    if idle:
        s, n = idle["stock"]["cpu_percent"], idle["nonstop"]["cpu_percent"]
        ratio = f"stock ÷ Nonstop = {s / n:.1f}x" if n > 0 else "Nonstop used no measurable CPU"
        out.append([
            f"Idle CPU, healthy connection(s), {idle['stock']['window_s']:g} s (% of one core; CPU time)",
            f"{s:.3f} % ({idle['stock']['cpu_seconds'] * 1000:.0f} ms)",
            f"{n:.3f} % ({idle['nonstop']['cpu_seconds'] * 1000:.0f} ms)" + _scans(idle["nonstop"]),
            ratio,
            "≤ stock",
            verdict(n <= s),
        ])  # fmt: skip
    cyc = results.get("cycles")
    if cyc:
        s, n = cyc["stock"], cyc["nonstop"]
        out.append([
            "Reset cycles completed (time-bounded, see note) / new connections",
            _cycles(s),
            _cycles(n),
            "",
            "(info: how many fit)",
            verdict(False) if n["stopped_by"].startswith("no reconnect") else "",
        ])  # fmt: skip
        out.append([
            "Threads before → after the reset cycles",
            f"{s['threads_before']} → {s['threads_after']}",
            f"{n['threads_before']} → {n['threads_after']}",
            f"after: Nonstop ÷ stock = {n['threads_after'] / max(1, s['threads_after']):.1f}x",
            f"flat (≤ +{THREADS_SLACK})",
            verdict(n["threads_after"] - n["threads_before"] <= THREADS_SLACK),
        ])  # fmt: skip
        out.append([
            "RSS before → after the reset cycles",
            f"{s['rss_before_mb']:.1f} → {s['rss_after_mb']:.1f} MB",
            f"{n['rss_before_mb']:.1f} → {n['rss_after_mb']:.1f} MB",
            f"after: Nonstop ÷ stock = {n['rss_after_mb'] / max(0.1, s['rss_after_mb']):.2f}x",
            f"flat (≤ +{RSS_SLACK_MB:g} MB)",
            verdict(n["rss_after_mb"] - n["rss_before_mb"] <= RSS_SLACK_MB),
        ])  # fmt: skip
    out += zero_loss_report.rows(results)
    out += answers_report.rows(results)
    return out


def _cpu_time(samples: list[dict[str, float]]) -> str:
    used = median_or_none([s["cpu_s"] for s in samples])
    wall = median_or_none([s["wall_s"] for s in samples])
    if used is None or wall is None:
        return "n/a"
    share = f" ({100 * used / wall:.0f} % of {secs(wall)})" if wall >= 1 else f" (in {secs(wall)})"
    return secs(used) + share


def _with_never(stat: dict[str, Any], cap: float) -> str:
    """The median, with the range of the samples (and how many never reconnected) in brackets."""
    text = secs(stat["median_s"], cap)
    extra: list[str] = []
    if len(stat["samples"]) > 1 and stat["min_s"] is not None:
        high = secs(stat["max_s"]) if not stat["never"] else f"> {cap:g} s"
        extra.append(f"{secs(stat['min_s'])} to {high}")
    if stat["never"] and stat["median_s"] is not None:
        extra.append(f"{stat['never']}/{len(stat['samples'])} never")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _cycles(c: dict[str, Any]) -> str:
    text = f"{c['cycles']} in {c['elapsed_s']:g} s / {c['reconnects']}"
    if c["stopped_by"] != "cycles":
        text += f" (stopped: {c['stopped_by']})"
    return text


# --- a baseline ("before", bench/run.py --baseline) ----------------------------------------------------


def before_key(key: str) -> str:
    """Where a result that has no per-kind dict keeps the baseline's measurement beside Nonstop's under `key`
    (the ledger's "sqlite" and "memory" bots, the soak)."""
    return f"{BEFORE}:{key}"


def as_before(value: Any) -> Any:
    """The results as if the baseline were Nonstop: wherever a dict holds "nonstop" and "before", or `key` and
    `before_key(key)`, the baseline's entry takes Nonstop's place. So `rows()` of this gives the before column."""
    if isinstance(value, list):
        return [as_before(v) for v in value]
    if not isinstance(value, dict):
        return value

    def source(key: Any) -> Any:
        if key == "nonstop" and BEFORE in value:
            return BEFORE
        return before_key(key) if isinstance(key, str) and before_key(key) in value else key

    return {key: as_before(value[source(key)]) for key in value}


def _numbered(table_rows: list[list[str]]) -> list[tuple[str, int]]:
    """(label, how many rows before this one had the same label): a row's name in both tables."""
    seen: Counter[str] = Counter()
    names = []
    for row in table_rows:
        names.append((row[0], seen[row[0]]))
        seen[row[0]] += 1
    return names


def with_before(after: list[list[str]], before: list[list[str]]) -> list[list[str]]:
    """Nonstop's rows with a before column after stock's: the cell of the before table's row of the same label
    (and occurrence), "n/a" where the baseline has none (a row whose label counts samples may differ)."""
    cells = dict(zip(_numbered(before), (row[2] for row in before), strict=True))
    names = _numbered(after)
    return [[row[0], row[1], cells.get(name, "n/a"), *row[2:]] for name, row in zip(names, after, strict=True)]


def table(results: dict[str, Any]) -> str:
    header = ["", "stock SocketModeHandler", "Nonstop", "ratio", "target (issue #4)", "Nonstop"]
    body = rows(results)
    baseline = results.get("baseline")
    if baseline:
        header[2:3] = [f"before ({baseline['commit']})", f"after: Nonstop ({results['code']['commit']})"]
        body = with_before(body, rows(as_before(results)))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


SCOPES_LINE = (
    "Scopes: every lane's bot token has the *:history and *:read scopes (--history-scopes), so Nonstop's "
    "catch-up is on; the stock bot reads no history, they change nothing for it."
)


def _scans(idle: dict[str, Any]) -> str:
    """ ", with N catch-up scans" when catch-up scanned in the idle window (bench/run.py --history-scopes)."""
    n = idle.get("catch_up_scans", 0)
    return f", with {n} catch-up scan{'s' if n != 1 else ''}" if n else ""


def render(results: dict[str, Any]) -> str:
    p = results["profile"]
    baseline = results.get("baseline")
    argv = results.get("argv")  # the command line as given (older results: only whether it was --quick)
    flags = "".join(f" {shlex.quote(a)}" for a in argv) if argv is not None else (" --quick" if p["quick"] else "")
    parts = [
        table(results),
        "",
        machine_line(results["machine"]),
        f"Run: `python bench/run.py{flags}`, {results['wall_s']:.0f} s wall time, {results['started']}.",
    ]
    if results.get("history_scopes"):
        parts.append(SCOPES_LINE)
    code = results.get("code")
    if code:
        changed = len(code["uncommitted"])
        parts.append(
            f"Code: commit {code['commit']}"
            + (f" plus uncommitted changes in {changed} file(s) of the bot (see the JSON)." if changed else ".")
        )
    if baseline:
        dirty = len(baseline["uncommitted"])
        parts.append(
            f"Before: commit {baseline['commit']}, {baseline['dir']}"
            + (f" plus uncommitted changes in {dirty} file(s) of the bot." if dirty else ".")
        )
    notes = list(results.get("notes", []))
    if notes:
        parts += ["", "Notes:", *[f"- {note}" for note in notes]]
    return "\n".join(parts)
