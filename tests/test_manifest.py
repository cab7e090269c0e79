"""manifest.yml is valid for Slack and declares exactly what the code handles, with exactly the scopes it needs."""

import json
import re
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import jsonschema
import pytest
import yaml
from slack_bolt import App

from listeners import register_listeners
from nonstop.catchup.core import KIND_SCOPES

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_PATH = REPO_ROOT / "manifest.yml"
SCHEMA_PATH = REPO_ROOT / "tests" / "schemas" / "slack-manifest.schema.json"  # Slack's, MIT: see its LICENSE

# What each registered thing needs from Slack. Registering something not in these tables fails the
# test on purpose: decide its scopes and add it here.
SCOPES_FOR_EVENT = {"app_mention": {"app_mentions:read"}, "app_home_opened": set()}  # views.publish needs none
SCOPES_FOR_SLASH_COMMAND = {"commands"}  # the answer travels in the ack: no further scope
SCOPES_FOR_EVENT_REPLIES = {"chat:write"}  # event listeners and the error handler reply via say() = chat.postMessage
# Catch-up reads the conversations for mentions Slack never delivered: list (*:read) and read (*:history) each kind.
SCOPES_FOR_CATCH_UP = {scope for pair in KIND_SCOPES.values() for scope in pair}

# App methods that register an interactive listener (these need settings.interactivity.is_enabled).
INTERACTIVE_REGISTRARS = (
    "action",
    "block_action",
    "attachment_action",
    "dialog_submission",
    "dialog_cancellation",
    "dialog_suggestion",
    "shortcut",
    "global_shortcut",
    "message_shortcut",
    "view",
    "view_submission",
    "view_closed",
    "options",
    "block_suggestion",
)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def registered() -> Any:
    """A recording App: what register_listeners binds, without building a real App."""
    app = create_autospec(App, instance=True)
    register_listeners(app)
    return app


def first_args(method: Any) -> set[str]:
    return {call.args[0] for call in method.call_args_list}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_manifest_matches_slacks_schema(manifest, schema):
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [
        f"{list(error.path)}: {error.message}" for error in jsonschema.Draft7Validator(schema).iter_errors(manifest)
    ]
    assert errors == []
    # The schema states this constraint with a non-standard "regex" keyword that validators ignore.
    assert re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", manifest["display_information"]["background_color"])


def test_schema_validation_catches_a_broken_manifest(manifest, schema):
    broken = json.loads(json.dumps(manifest))
    broken["features"]["slash_commands"][0]["url"] = "ws://not-http"
    del broken["display_information"]
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(broken))
    assert len(errors) == 2


def test_socket_mode_app_without_request_urls(manifest):
    settings = manifest["settings"]
    assert manifest["_metadata"]["major_version"] == 1
    assert settings["socket_mode_enabled"] is True
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    assert "request_url" not in settings["event_subscriptions"]
    assert "request_url" not in settings["interactivity"]
    assert all("url" not in command for command in manifest["features"]["slash_commands"])
    assert manifest["features"]["bot_user"] == {"display_name": "nonstop", "always_online": True}
    assert manifest["display_information"]["name"] == "Nonstop"


def test_recording_app_sees_the_registrations(registered):
    # Guards the tests below against a recorder that records nothing (a listener added since is no failure).
    assert first_args(registered.event) >= {"app_mention", "app_home_opened"}
    assert "/nonstop" in first_args(registered.command)
    assert "check_connection" in first_args(registered.action)
    registered.error.assert_called_once()


def test_declared_events_are_exactly_the_handled_events(manifest, registered):
    handled = first_args(registered.event)
    assert not registered.message.called, "message listeners need message.* bot events: declare them"
    assert set(manifest["settings"]["event_subscriptions"].get("bot_events", [])) == handled
    assert manifest["settings"]["event_subscriptions"].get("user_events", []) == []


def test_declared_commands_are_exactly_the_handled_commands(manifest, registered):
    declared = {command["command"] for command in manifest["features"].get("slash_commands", [])}
    assert declared == first_args(registered.command)
    [nonstop] = [command for command in manifest["features"]["slash_commands"] if command["command"] == "/nonstop"]
    assert nonstop["usage_hint"] == "[ping | status | help]"
    assert nonstop["description"]


def test_interactivity_is_enabled_only_if_an_interactive_listener_exists(manifest, registered):
    interactive = [name for name in INTERACTIVE_REGISTRARS if getattr(registered, name).called]
    assert manifest["settings"]["interactivity"]["is_enabled"] is bool(interactive)


def test_home_tab_is_enabled_exactly_when_app_home_opened_is_handled(manifest, registered):
    app_home = manifest["features"].get("app_home", {})
    assert app_home.get("home_tab_enabled", False) is ("app_home_opened" in first_args(registered.event))
    assert app_home.get("messages_tab_enabled") is False, "no message listener: a Messages tab would go unanswered"


def test_bot_scopes_are_exactly_the_needed_ones(manifest, registered):
    events = first_args(registered.event)
    needed: set[str] = set()
    for event in events:
        needed |= SCOPES_FOR_EVENT[event]
    if registered.command.called:
        needed |= SCOPES_FOR_SLASH_COMMAND
    if "app_mention" in events:
        needed |= SCOPES_FOR_EVENT_REPLIES | SCOPES_FOR_CATCH_UP
    declared = manifest["oauth_config"]["scopes"]["bot"]
    assert len(declared) == len(set(declared)), "duplicate scope"
    assert set(declared) == needed
    assert "user" not in manifest["oauth_config"]["scopes"]
