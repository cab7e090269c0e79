"""The state worked out from the link pool's view: what an operator reads when Slack refuses connections."""

from __future__ import annotations

from nonstop.status.reporter import Phase, StateReporter
from nonstop.status.snapshot import LinksView
from nonstop.status.state import State


def report(view: LinksView) -> tuple[State, str, bool]:
    r = StateReporter(lambda: view, lambda: Phase(state=None)).report()
    return r.state, r.detail, r.refusing


def test_no_live_link_and_slack_refusing_is_its_own_state_with_the_counts() -> None:
    view = LinksView(target=2, live=0, suspect=1, unaccounted=9, refused=True, limit=10)
    assert report(view) == (State.REFUSED, "Slack refuses new connections: 10 of 10 counted, 0 live here", True)


def test_a_live_link_while_slack_refuses_more_is_degraded_and_says_why() -> None:
    view = LinksView(target=2, live=1, unaccounted=9, refused=True, limit=10)
    state, detail, refusing = report(view)
    assert state is State.DEGRADED
    assert detail == "1 of 2 connections; Slack refuses new connections: 10 of 10 counted, 1 live here"
    assert refusing


def test_once_a_link_connects_the_refusal_is_over() -> None:
    assert report(LinksView(target=2, live=2)) == (State.CONNECTED, "", False)
    assert report(LinksView(target=2, live=0))[0] is State.CONNECTING
