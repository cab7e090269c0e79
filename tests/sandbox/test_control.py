"""`python -m sandbox` in a subprocess, driven over HTTP by RemoteSandbox."""

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from sandbox.remote import RemoteSandbox
from sandbox.testing import clean_env, raw_connect, recv_json

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def remote(no_proxy_env):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--ack-deadline",
            "0.5",
            "--retry-delays",
            "0,0.2,0.2",
            "--ping-interval",
            "1",
        ],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # blocks until the sandbox is up (or the process died)
        info = json.loads(line)
        yield RemoteSandbox(info["control_url"]), info
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_remote_control_round_trip(remote):
    rs, info = remote
    assert rs.api_url == info["api_url"]
    assert info["bot_token"].startswith("xoxb-")
    assert info["app_token"].startswith("xapp-1-sandbox-")

    class Target:  # raw_connect only needs api_url and app_token
        api_url = rs.api_url
        app_token = rs.app_token

    with raw_connect(Target) as ws:
        assert recv_json(ws)["type"] == "hello"
        rs.wait_until(lambda: rs.connections(live_only=True), what="a live connection")
        d = rs.mention(text="ping")
        env = recv_json(ws)
        assert env["payload"]["event_id"] == d.event_id
        ws.send(json.dumps({"envelope_id": env["envelope_id"]}))
        rs.wait_until(lambda: rs.deliveries()[0].outcome == "acked", what="ack")
        assert rs.calls(method="apps.connections.open")[0].ok
        assert rs.reset() == ["c1"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert rs.connections()[0].close_how == "reset"


def test_remote_batch_eof_and_lost_first_acks(remote):
    rs, _ = remote

    class Target:
        api_url = rs.api_url
        app_token = rs.app_token

    with raw_connect(Target) as ws:
        assert recv_json(ws)["type"] == "hello"
        rs.wait_until(lambda: rs.connections(live_only=True), what="a live connection")
        rs.lose_first_acks(fraction=1.0)
        batch = rs.mentions(texts=["one", "two", "three"])
        assert [d.text for d in batch] == ["<@U0BOT0001> one", "<@U0BOT0001> two", "<@U0BOT0001> three"]
        envs = [recv_json(ws) for _ in batch]
        assert [e["envelope_id"] for e in envs] == [d.envelope_id for d in batch]
        for env in envs:
            ws.send(json.dumps({"envelope_id": env["envelope_id"]}))  # each lost on the wire
        retries = [recv_json(ws) for _ in batch]
        assert {e["retry_attempt"] for e in retries} == {1}
        rs.lose_first_acks(fraction=0)
        assert rs.eof(conn=[rs.connections()[0].id]) == ["c1"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is None
    assert rs.connections()[0].close_how == "eof"
    with pytest.raises(RuntimeError, match="fraction must be between 0 and 1"):
        rs.lose_first_acks(fraction=2)


def test_remote_refused_outage_keeps_control_reachable(remote):
    rs, _ = remote
    rs.outage(seconds=30, mode="refused")
    with pytest.raises(urllib.error.URLError):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(rs.api_url + "auth.test", timeout=5)
    rs.end_outage()
    rs.slow_api(delay_s=0)
    with pytest.raises(RuntimeError, match="mode must be one of"):
        rs.outage(seconds=1, mode="bogus")
    with pytest.raises(AttributeError):
        rs.not_a_verb  # noqa: B018
