import logging
from unittest.mock import create_autospec

import pytest
from slack_bolt import Ack

from listeners.commands.nonstop import nonstop_command_callback
from nonstop.status import Telemetry
from tests.listeners.payloads import VERIFICATION_TOKEN, command_payload

LOGGER = logging.getLogger("test.nonstop_command")


@pytest.fixture
def telemetry(monkeypatch) -> Telemetry:
    fresh = Telemetry()
    monkeypatch.setattr("listeners.commands.nonstop.TELEMETRY", fresh)
    return fresh


@pytest.fixture
def ack() -> Ack:
    return create_autospec(Ack, instance=True)


def acked(ack) -> dict:
    ack.assert_called_once()
    kwargs = ack.call_args.kwargs
    assert kwargs["response_type"] == "ephemeral"
    assert kwargs["text"]
    return kwargs


def test_ping_is_answered_ephemerally_in_the_ack(telemetry, ack):
    telemetry.rtt(17.2)

    nonstop_command_callback(ack=ack, command=command_payload("ping"), logger=LOGGER)

    reply = acked(ack)
    assert "pong" in reply["text"]
    assert "17 ms" in reply["text"]


def test_status_is_rendered_with_blocks(telemetry, ack):
    telemetry.connection_up()
    telemetry.set_state("connected")

    nonstop_command_callback(ack=ack, command=command_payload(" STATUS "), logger=LOGGER)

    reply = acked(ack)
    assert "Last drop: never" in reply["text"]
    assert "1 of 1" in reply["text"]
    assert reply["blocks"][1]["fields"]


@pytest.mark.parametrize("text", ["", "help", "  Help  "])
def test_empty_or_help_lists_the_subcommands(telemetry, ack, text):
    nonstop_command_callback(ack=ack, command=command_payload(text), logger=LOGGER)

    reply = acked(ack)
    for sub in ("ping", "status", "help"):
        assert f"/nonstop {sub}" in reply["text"]


def test_unknown_subcommand_gets_the_hint(telemetry, ack):
    nonstop_command_callback(ack=ack, command=command_payload("reboot now"), logger=LOGGER)

    reply = acked(ack)
    assert "reboot" in reply["text"]
    assert "/nonstop help" in reply["text"]


def test_failure_while_building_the_reply_still_acks_politely_and_logs(telemetry, ack, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr("listeners.commands.nonstop.reply_for", broken)

    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        nonstop_command_callback(ack=ack, command=command_payload("status"), logger=LOGGER)

    reply = acked(ack)
    assert reply["text"].startswith("Sorry, something went wrong on my side")
    ref = reply["text"].rsplit("ref ", 1)[1].rstrip(").")
    [record] = caplog.records
    assert ref in record.getMessage()
    assert "command=/nonstop" in record.getMessage()
    assert record.exc_info is not None
    assert VERIFICATION_TOKEN not in caplog.text
