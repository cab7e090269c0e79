"""The supervisor's life cycle as a library: stopping before it runs, and leaving the process as it found it."""

from __future__ import annotations

import asyncio
import sys
import threading

from slack_bolt import App
from slack_sdk import WebClient

from nonstop import SupervisedSocketModeHandler
from nonstop.bolt.runner import BoltRunner
from nonstop.config.settings import SupervisorSettings
from nonstop.links.tickets import ticket_client
from nonstop.status import Telemetry
from nonstop.supervisor import Supervisor
from sandbox import Sandbox


def make_app(sb: Sandbox) -> App:
    return App(client=WebClient(token=sb.bot_token, base_url=sb.api_url))


def test_stop_requested_before_run_ends_run_without_connecting(sandbox: Sandbox) -> None:
    app, telemetry = make_app(sandbox), Telemetry()
    supervisor = Supervisor(
        sandbox.app_token,
        settings=SupervisorSettings(),
        telemetry=telemetry,
        runner=lambda: BoltRunner(app, event_threads=2, command_threads=1, telemetry=telemetry),
        tickets=ticket_client(app.client, 10),
    )
    supervisor.request_stop("asked early")
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(asyncio.run(supervisor.run())), daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "run() must not wait forever for a stop that was already asked for"
    assert result == [0]
    assert sandbox.calls("apps.connections.open") == []


def test_close_right_after_connect_stops_the_background_handler(sandbox: Sandbox) -> None:
    handler = SupervisedSocketModeHandler(make_app(sandbox), sandbox.app_token, telemetry=Telemetry())
    handler.connect()
    assert handler.close(timeout_s=30) == 0


def test_a_drop_in_handler_leaves_process_wide_settings_alone(sandbox: Sandbox) -> None:
    before = sys.getswitchinterval()
    handler = SupervisedSocketModeHandler(make_app(sandbox), sandbox.app_token, telemetry=Telemetry())
    handler.connect()
    sandbox.wait_for_connections(2)
    assert sys.getswitchinterval() == before
    assert handler.close(timeout_s=30) == 0


def test_an_opted_in_switch_interval_is_restored_on_stop(sandbox: Sandbox) -> None:
    before = sys.getswitchinterval()
    settings = SupervisorSettings(connections=1, gil_switch_interval_s=0.0007)
    handler = SupervisedSocketModeHandler(
        make_app(sandbox), sandbox.app_token, settings=settings, telemetry=Telemetry()
    )
    handler.connect()
    sandbox.wait_for_connections(1)
    assert sys.getswitchinterval() == 0.0007
    assert handler.close(timeout_s=30) == 0
    assert sys.getswitchinterval() == before
