"""Table rows for the zero-loss measurements (`results["zero_loss"]`, see bench/zero_loss.py)."""

from __future__ import annotations

from typing import Any

from bench.scenarios import BURST_TITLES
from bench.zero_loss import COMMAND_DEADLINE_S, DRAIN_TIMEOUT_S, MIX_TITLES, STUCK_FOR_S, STUCK_LISTENERS

COMMAND_TARGET_S = 0.100
LEDGER_RATIO_TARGET = 1.3
LEDGER_P99_TARGET_S = 0.020
MIX_TARGET_PCT = 95.0
SOAK_SLACK = {"rss_mb": 10.0, "threads": 2, "fds": 4}  # "flat": last ≤ first + this
# Nonstop's thread pools start threads on demand and keep them, so a thread count that grows under load is
# fine up to their sizes with the defaults (docs/how-it-stays-online.md): 32 listener + 8 command + 2 x 4
# dispatch threads, plus the main thread, the event loop's and the health server's, and one spare.
POOL_THREADS = 32 + 8 + 2 * 4 + 4


def _secs(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.0095 else f"{value * 1000:.1f} ms"
    return f"{value:.1f} s"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def _stop_cell(r: dict[str, Any]) -> str:
    code = "none (killed after 30 s)" if r["exit_code"] is None else str(r["exit_code"])
    extra = f"exit {code} after {_secs(r['exit_s'])}; {r['replies_on_their_way']} replies on their way"
    if r.get("left_in_ledger") is not None:
        extra += f"; {r['left_in_ledger']} left in the ledger"
    return f"{r['answered']} / {r['lost']} / {r['doubled']} ({extra})"


def _stop_rows(zl: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    titles = {
        "crash": "Crash: 30 mentions acked while replies take 2 s, SIGKILL, same command restarted: "
        "answered / lost / doubled",
        "drain": f"Drain past its deadline: the same, SIGTERM (Nonstop: NONSTOP_DRAIN_TIMEOUT={DRAIN_TIMEOUT_S:g}; "
        "stock: its own SIGTERM handling), restarted: answered / lost / doubled",
    }
    for row, title in titles.items():
        r = zl.get(row, {})
        s, n = r.get("stock"), r.get("nonstop")
        if not (s and n):
            continue
        ok = n["lost"] == 0 and n["answered"] == n["mentions"] and n["doubled"] <= n["replies_on_their_way"]
        if row == "drain":
            ok = ok and n["exit_code"] == 0
        out.append([
            title,
            _stop_cell(s),
            _stop_cell(n),
            f"lost {s['lost']} vs {n['lost']}",
            f"{n['mentions']} / 0 / ≤ those on their way" + (", exit 0" if row == "drain" else ""),
            _verdict(ok),
        ])  # fmt: skip
    return out


def _command_cell(c: dict[str, Any]) -> str:
    if c["p50_s"] is not None:
        return f"{_secs(c['p50_s'])} / {_secs(c['p99_s'])}"
    late = f"; latest ack {_secs(c['late_max_s'])}" if c["late_max_s"] is not None else ""
    return f"{c['in_time']} of {c['tries']} acked within {COMMAND_DEADLINE_S:g} s{late}"


def _command_rows(zl: dict[str, Any]) -> list[list[str]]:
    c = zl.get("command", {})
    s, n = c.get("stock"), c.get("nonstop")
    if not (s and n):
        return []
    if n["p50_s"] is not None and s["p50_s"] is not None:
        ratio = f"p99 {s['p99_s'] / max(n['p99_s'], 0.0005):,.0f}x faster"
    elif n["p50_s"] is not None:
        ratio = f"Nonstop {n['tries']} of {n['tries']}, stock {s['in_time']} of {s['tries']} in time"
    else:
        ratio = ""
    return [[
        f"/nonstop ping while {STUCK_LISTENERS} mention listeners wait on a chat.postMessage that takes "
        f"{STUCK_FOR_S:g} s: command → ack with the answer, p50 / p99 ({n['tries']} tries)",
        _command_cell(s),
        _command_cell(n),
        ratio,
        f"≤ {COMMAND_TARGET_S * 1000:.0f} ms",
        _verdict(n["p99_s"] is not None and n["p99_s"] <= COMMAND_TARGET_S),
    ]]  # fmt: skip


def _ledger_rows(zl: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    for shape, led in (zl.get("ledger") or {}).items():
        sq, mem = led["sqlite"], led["memory"]
        if sq["ack_p99_s"] is None or mem["ack_p99_s"] is None:
            continue
        ratio = sq["ack_p99_s"] / max(mem["ack_p99_s"], 0.0005)
        each = f"{sq['count']} mentions {BURST_TITLES[shape]}, {sq['rounds']} bursts per backend, pooled"
        rows += [
            [
                f"Ledger overhead (Nonstop only): ack p50 / p99, {each}: NONSTOP_LEDGER=sqlite:///… vs memory://",
                "",
                f"{_secs(sq['ack_p50_s'])} / {_secs(sq['ack_p99_s'])} vs {_secs(mem['ack_p50_s'])} / "
                f"{_secs(mem['ack_p99_s'])}",
                f"p99 sqlite ÷ memory = {ratio:.2f}x",
                f"≤ {LEDGER_RATIO_TARGET:g}x",
                _verdict(ratio <= LEDGER_RATIO_TARGET),
            ],
            [
                f"Ledger overhead: ack p99 with the SQLite ledger on ({BURST_TITLES[shape]})",
                "",
                _secs(sq["ack_p99_s"]),
                "",
                f"≤ {LEDGER_P99_TARGET_S * 1000:.0f} ms",
                _verdict(sq["ack_p99_s"] <= LEDGER_P99_TARGET_S),
            ],
        ]
    return rows


def _mix_cell(m: dict[str, Any]) -> str:
    return f"{m['within_5s_pct']:.1f} % ({m['within_5s']} of {m['mentions']}; p50 {_secs(m['delay_p50_s'])})"


def _by_fault(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{MIX_TITLES.get(k, k)} {v}" for k, v in ordered) or "none"


def _lost_after(m: dict[str, Any]) -> str:
    return f" ({_by_fault(m['lost_after'])})" if m.get("lost_after") else ""


def _mix_rows(zl: dict[str, Any]) -> list[list[str]]:
    mix = zl.get("faultmix")
    if not mix:
        return []
    s, n = mix["by_kind"]["stock"], mix["by_kind"]["nonstop"]
    kinds = ", ".join(MIX_TITLES[k] for k in sorted({f["fault"] for f in mix["faults"]}))
    what = (
        f"Fault mix: {mix['mentions']} mentions, one every 0.5 s for {mix['duration_s'] / 60:g} min, "
        f"{len(mix['faults'])} seeded faults (seed {mix['seed']}: {kinds})"
    )
    return [
        [
            f"{what}: answered within 5 s of when Slack could deliver",
            _mix_cell(s),
            _mix_cell(n),
            f"{n['within_5s_pct'] - s['within_5s_pct']:+.1f} points",
            f"≥ {MIX_TARGET_PCT:g} %",
            _verdict(n["within_5s_pct"] >= MIX_TARGET_PCT),
        ],
        [
            "Fault mix: not answered within 5 s (lost included), by the last fault before the mention",
            _by_fault(s.get("late_after", {})),
            _by_fault(n.get("late_after", {})),
            "",
            "(info)",
            "",
        ],
        [
            "Fault mix: lost / doubled (lost: by the last fault before the mention)",
            f"{s['lost']} / {s['doubled']}{_lost_after(s)}",
            f"{n['lost']} / {n['doubled']}{_lost_after(n)}",
            f"lost {s['lost']} vs {n['lost']}",
            "0 / 0",
            _verdict(n["lost"] == 0 and n["doubled"] == 0),
        ],
    ]


def _soak_rows(zl: dict[str, Any]) -> list[list[str]]:
    soak = zl.get("soak")
    if not soak or not soak["rss_mb"]:
        return []
    m = soak["mix"]["by_kind"]["nonstop"]
    label = f"Soak, {soak['minutes']:g} min of the fault mix (Nonstop only, sampled every minute)"
    out = []
    for key, title, unit in (
        ("rss_mb", "RSS", " MB"),
        ("threads", "threads", ""),
        ("fds", "open file descriptors", ""),
    ):
        v = soak[key]
        fmt = "{:.1f}" if key == "rss_mb" else "{:.0f}"
        cell = " / ".join(fmt.format(v[k]) for k in ("first", "last", "max")) + unit
        target, ok = f"flat (last ≤ first + {SOAK_SLACK[key]:g})", v["last"] <= v["first"] + SOAK_SLACK[key]
        if key == "threads":
            target, ok = f"{target}, or within the pools (≤ {POOL_THREADS})", ok or v["max"] <= POOL_THREADS
        out.append([f"{label}: {title} first / last / max", "", cell, "", target, _verdict(ok)])
    out.append([
        f"{label}: answered / lost / doubled of {m['mentions']}; within 5 s",
        "",
        f"{m['answered']} / {m['lost']} / {m['doubled']}; {m['within_5s_pct']:.1f} %",
        "",
        "every mention answered, same process",
        _verdict(m["lost"] == 0 and soak["same_process"]),
    ])  # fmt: skip
    return out


def rows(results: dict[str, Any]) -> list[list[str]]:
    zl = results.get("zero_loss") or {}
    return _stop_rows(zl) + _command_rows(zl) + _ledger_rows(zl) + _mix_rows(zl) + _soak_rows(zl)
