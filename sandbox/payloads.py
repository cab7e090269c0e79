"""Builders for the JSON that "Slack" sends (shapes copied from §8 of the protocol notes)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from sandbox.config import (
    APP_ID,
    APPLINK_HOST,
    BOT_ID,
    BOT_USER_ID,
    BOT_USER_NAME,
    HUMAN_USER_NAME,
    TEAM_DOMAIN,
    TEAM_ID,
    TEAM_NAME,
    VERIFICATION_TOKEN,
)


class TsClock:
    """Unique, increasing Slack timestamps ("<10-digit seconds>.<6 digits>") that follow the wall
    clock, as Slack's do: a bot may read the delay between a message and its own reply from them."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        micros = max(time.time_ns() // 1000, self._last + 1)
        self._last = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def new_envelope_id() -> str:
    return str(uuid.uuid4())


def hello(num_connections: int, approximate_connection_time: int) -> dict[str, Any]:
    return {
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": APPLINK_HOST,
            "build_number": 1,
            "approximate_connection_time": approximate_connection_time,
        },
        "connection_info": {"app_id": APP_ID},
    }


def disconnect(reason: str) -> dict[str, Any]:
    return {"type": "disconnect", "reason": reason, "debug_info": {"host": APPLINK_HOST}}


def _event_context(event_type: str, channel: str) -> str:
    raw = json.dumps({"et": event_type, "tid": TEAM_ID, "aid": APP_ID, "cid": channel}, separators=(",", ":"))
    return "4-" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def mention_event(
    *, text: str, channel: str, user: str, ts: str, thread_ts: str | None, bot_id: str | None
) -> dict[str, Any]:
    """The inner `event` of an app_mention; `text` is the part after the bot mention."""
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "app_mention",
        "text": f"<@{BOT_USER_ID}> {text}",
        "user": user,
        "ts": ts,
        "blocks": [
            {
                "type": "rich_text",
                "block_id": "2Le",
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [{"type": "user", "user_id": BOT_USER_ID}, {"type": "text", "text": f" {text}"}],
                    }
                ],
            }
        ],
        "team": TEAM_ID,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    if bot_id is not None:
        event["bot_id"] = bot_id
    return event


def event_callback(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "context_enterprise_id": None,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(float(event.get("event_ts", time.time()))),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": _event_context(event["type"], event.get("channel", "")),
    }


def events_api_envelope(payload: dict[str, Any], retry_attempt: int, envelope_id: str) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": retry_attempt,
        "retry_reason": "timeout" if retry_attempt else "",
        "payload": payload,
    }


def slash_command(
    *, command: str, text: str, channel: str, user: str, response_url: str, trigger_id: str
) -> dict[str, str]:
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": "general" if channel == "C0GENERAL" else channel.lower(),
        "user_id": user,
        "user_name": HUMAN_USER_NAME,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def slash_envelope(payload: dict[str, str], envelope_id: str) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": "slash_commands",
        "accepts_response_payload": True,
        "payload": payload,
    }


def interactive_envelope(payload: dict[str, Any], envelope_id: str) -> dict[str, Any]:
    accepts = payload.get("type") in ("view_submission", "block_suggestion")
    return {
        "envelope_id": envelope_id,
        "type": "interactive",
        "accepts_response_payload": accepts,
        "payload": payload,
    }


def auth_test(is_app_token: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ok": True,
        "url": f"https://{TEAM_DOMAIN}.slack.com/",
        "team": TEAM_NAME,
        "user": BOT_USER_NAME,
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "is_enterprise_install": False,
    }
    if not is_app_token:
        body["bot_id"] = BOT_ID
    else:
        body["app_id"] = APP_ID
    return body


def message_metadata(raw: Any) -> tuple[dict[str, Any] | None, str]:
    """chat.postMessage's `metadata` argument: a JSON object, or its text in a form field [DOC], with a
    string `event_type` and an object `event_payload`. Returns (metadata or None, error code or "")
    [DOC: invalid_metadata_format, invalid_metadata_schema; INF: which case gets which]."""
    if raw is None or raw == "":
        return None, ""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None, "invalid_metadata_format"
    if not isinstance(raw, dict):
        return None, "invalid_metadata_format"
    if not isinstance(raw.get("event_type"), str) or not isinstance(raw.get("event_payload"), dict):
        return None, "invalid_metadata_schema"
    return {"event_type": raw["event_type"], "event_payload": raw["event_payload"]}, ""


def posted_message(params: dict[str, Any], ts: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The message the bot's chat.postMessage (or chat.update) makes, as Slack answers and stores it."""
    message: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": params.get("text", ""),
        "ts": ts,
        "team": TEAM_ID,
    }
    for key in ("blocks", "attachments", "thread_ts"):
        if params.get(key):
            message[key] = params[key]
    if metadata is not None:
        message["metadata"] = metadata
    return message


# -- App Home (shapes from Slack's reference pages for app_home_opened, views.publish and block_actions) ---


def app_home_channel(user: str) -> str:
    """The bot's DM with `user`, where the App Home lives (the id format is an assumption: 'D' + user)."""
    return "D" + user[1:]


def app_home_opened_event(*, user: str, event_ts: str, view: dict[str, Any] | None) -> dict[str, Any]:
    """A user opened the Home tab. `view` is included only once a view has been published for them."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user,
        "channel": app_home_channel(user),
        "tab": "home",
        "event_ts": event_ts,
    }
    if view is not None:
        event["view"] = view
    return event


def published_view(view: dict[str, Any], *, view_id: str, view_hash: str) -> dict[str, Any]:
    """The stored Home view as views.publish answers it (and as later events carry it)."""
    return {
        "id": view_id,
        "team_id": TEAM_ID,
        "type": "home",
        "blocks": view.get("blocks", []),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": view_hash,
        "title": {"type": "plain_text", "text": "View Title", "emoji": True},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": None,
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": APP_ID,
        "external_id": view.get("external_id", ""),
        "app_installed_team_id": TEAM_ID,
        "bot_id": BOT_ID,
    }


def block_actions_from_view(
    *, view: dict[str, Any], block: dict[str, Any], element: dict[str, Any], user: str, action_ts: str
) -> dict[str, Any]:
    """A click on a button in a published view. Actions in views carry no response_url (Slack's docs)."""
    action = {
        "action_id": element.get("action_id", ""),
        "block_id": block.get("block_id", ""),
        "text": element.get("text", {}),
        "type": element.get("type", "button"),
        "action_ts": action_ts,
    }
    if "value" in element:
        action["value"] = element["value"]
    return {
        "type": "block_actions",
        "user": {"id": user, "username": HUMAN_USER_NAME, "name": HUMAN_USER_NAME, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "view", "view_id": view["id"]},
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "view": view,
        "actions": [action],
    }
