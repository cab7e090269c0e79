"""What users do: mention the bot, use its slash command, interact, open its Home tab and click there."""

from __future__ import annotations

from typing import Any

from sandbox import history, payloads
from sandbox.config import APP_ID, GENERAL_CHANNEL, HUMAN_USER_ID, TEAM_ID
from sandbox.core import SandboxBase
from sandbox.records import Delivery, DeliveryRecord

__all__ = ["UserActions"]


class UserActions(SandboxBase):
    """Users acting in the workspace; each action returns a `Delivery` handle."""

    # --- users talking to the bot --------------------------------------------------------------
    def mention(
        self,
        text: str,
        channel: str = GENERAL_CHANNEL,
        user: str = HUMAN_USER_ID,
        thread_ts: str | None = None,
        bot_id: str | None = None,
    ) -> Delivery:
        """A user writes "<@bot> text": an app_mention event over Socket Mode."""

        def run() -> Delivery:
            ts = self._webapi.clock.next()
            event = payloads.mention_event(
                text=text, channel=channel, user=user, ts=ts, thread_ts=thread_ts, bot_id=bot_id
            )
            return self._start_event(event)

        return self._call(run)

    def mentions(self, texts: list[str], channel: str = GENERAL_CHANNEL, user: str = HUMAN_USER_ID) -> list[Delivery]:
        """Many users mention the bot at the same instant: every envelope is written in one turn of the
        sandbox's loop (one control request), not one request per mention."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings")

        def run() -> list[Delivery]:
            out = []
            for text in texts:
                ts = self._webapi.clock.next()
                event = payloads.mention_event(
                    text=text, channel=channel, user=user, ts=ts, thread_ts=None, bot_id=None
                )
                out.append(self._start_event(event))
            return out

        return self._call(run)

    def send_event(self, event: dict[str, Any]) -> Delivery:
        """Deliver any Events API `event` (ts/event_ts filled in when missing)."""

        def run() -> Delivery:
            full = dict(event)
            full.setdefault("ts", self._webapi.clock.next())
            full.setdefault("event_ts", full["ts"])
            return self._start_event(full)

        return self._call(run)

    def user_message(
        self, text: str, channel: str = GENERAL_CHANNEL, user: str = HUMAN_USER_ID, thread_ts: str | None = None
    ) -> str:
        """A user writes a message that does not mention the bot: it is in the conversation's history, and
        no event is sent (the bot subscribes to mentions only). Returns its ts.

        Args:
            text: the message's text, as written.
            channel: the conversation (created on first use, see `add_conversation`).
            user: who writes it.
            thread_ts: the parent's ts, for a reply in a thread.
        """

        def run() -> str:
            ts = self._webapi.clock.next()
            conv = self._webapi.history.resolve(channel)
            self._webapi.history.record(conv, history.user_message(text=text, user=user, ts=ts, thread_ts=thread_ts))
            return ts

        return self._call(run)

    def _start_event(self, event: dict[str, Any]) -> Delivery:
        if event.get("type") == "app_mention" and event.get("channel") and event.get("ts"):
            # The message is in history whatever happens to the event: delivered, retried, given up on,
            # or dropped by an incident.
            conv = self._webapi.history.resolve(str(event["channel"]))
            self._webapi.history.record(conv, history.mention_message(event))
        self._seq += 1
        event_id = f"{self._event_prefix}{self._seq:05d}"
        payload = payloads.event_callback(event, event_id)
        record = DeliveryRecord(event_id, "events_api", event_id, payloads.events_api_envelope(payload, 0, ""))
        envelope_id = self._router.start(record)
        return Delivery(
            key=event_id,
            kind="events_api",
            event_id=event_id,
            ts=event.get("ts"),
            channel=event.get("channel"),
            user=event.get("user"),
            text=event.get("text"),
            thread_ts=event.get("thread_ts"),
            envelope_id=envelope_id,
        )

    def slash_command(
        self, text: str = "", command: str = "/nonstop", channel: str = GENERAL_CHANNEL, user: str = HUMAN_USER_ID
    ) -> Delivery:
        def run() -> Delivery:
            self._seq += 1
            n = self._seq
            response_url = f"{self.web_url}/commands/{TEAM_ID}/{1000 + n}/{n:06x}ab"
            trigger_id = f"{1000 + n}.{2000 + n}.{n:032x}"
            payload = payloads.slash_command(
                command=command, text=text, channel=channel, user=user, response_url=response_url, trigger_id=trigger_id
            )
            key = f"Cmd{n:05d}"
            record = DeliveryRecord(key, "slash_commands", None, payloads.slash_envelope(payload, ""))
            envelope_id = self._router.start(record)
            return Delivery(
                key, "slash_commands", None, None, channel, user, text, None, envelope_id, response_url, trigger_id
            )

        return self._call(run)

    def interactive(self, payload: dict[str, Any]) -> Delivery:
        def run() -> Delivery:
            self._seq += 1
            key = f"Int{self._seq:05d}"
            body = dict(payload)
            body.setdefault("api_app_id", APP_ID)
            body.setdefault("team", {"id": TEAM_ID, "domain": "emulated"})
            body.setdefault("user", {"id": HUMAN_USER_ID, "username": "alice", "team_id": TEAM_ID})
            body.setdefault("token", "ZZZZZZWSxiZZZ2yIvs3peJ")
            body.setdefault("trigger_id", f"{1000 + self._seq}.{2000 + self._seq}.{self._seq:032x}")
            if body.get("type") == "block_actions" and (body.get("container") or {}).get("type") != "view":
                body.setdefault("response_url", f"{self.web_url}/actions/{APP_ID}/1/{key}")
            record = DeliveryRecord(key, "interactive", None, payloads.interactive_envelope(body, ""))
            envelope_id = self._router.start(record)
            channel = (body.get("channel") or {}).get("id")
            user = (body.get("user") or {}).get("id")
            return Delivery(
                key, "interactive", None, None, channel, user, None, None, envelope_id, body.get("response_url"),
                body["trigger_id"],
            )  # fmt: skip

        return self._call(run)

    # --- the App Home ---------------------------------------------------------------------------
    def open_app_home(self, user: str = HUMAN_USER_ID) -> Delivery:
        """`user` opens the bot's Home tab: an app_home_opened event (with the view published so far)."""

        def run() -> Delivery:
            view = self._webapi.home_views.get(user)
            event = payloads.app_home_opened_event(user=user, event_ts=self._webapi.clock.next(), view=view)
            return self._start_event(event)

        return self._call(run)

    def click(self, action_id: str, user: str = HUMAN_USER_ID) -> Delivery:
        """`user` clicks the element `action_id` in the Home view published for them: block_actions."""

        def run() -> Delivery:
            view = self._webapi.home_views.get(user)
            if view is None:
                raise LookupError(f"no Home view published for {user}: open_app_home first")
            for block in view.get("blocks", []):
                for element in block.get("elements", []) + ([block["accessory"]] if "accessory" in block else []):
                    if isinstance(element, dict) and element.get("action_id") == action_id:
                        return self.interactive(
                            payloads.block_actions_from_view(
                                view=view, block=block, element=element, user=user, action_ts=self._webapi.clock.next()
                            )
                        )
            raise LookupError(f"no element with action_id {action_id!r} in the Home view of {user}")

        return self._call(run)

    def home_view(self, user: str = HUMAN_USER_ID) -> dict[str, Any] | None:
        """The Home view last published for `user` (None before the first views.publish)."""
        return self._call(lambda: self._webapi.home_views.get(user))

    # --- the workspace's conversations ------------------------------------------------------------
    def add_conversation(
        self, channel: str, kind: str = "public_channel", name: str = "", member: bool = True, user: str = ""
    ) -> dict[str, Any]:
        """A conversation, or new settings for one: what the bot may read and post to.

        Args:
            channel: its id: C… (a channel, public or private), G… (private or mpim), D… (an im).
            kind: `public_channel`, `private_channel`, `mpim` or `im` (users.conversations' types).
            name: its name (the id in lower case by default).
            member: is the bot in it? Not: its posts and reads answer `not_in_channel`.
            user: the other party of an im.

        Returns the conversation as users.conversations lists it, plus `kind` and `member`.
        """

        def run() -> dict[str, Any]:
            conv = self._webapi.history.add(channel, kind, name, member=bool(member), user=user or None)
            return {**conv.summary(), "kind": conv.kind, "member": conv.member}

        return self._call(run)
