"""A terminal chat with the bot through the sandbox, plus one-word fault commands."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from sandbox.config import BOT_USER_ID
from sandbox.records import ApiCall, Delivery
from sandbox.server import Sandbox

HELP = """\
Talk to the bot:
  @{name} ping            mention the bot (any line that mentions it works)
  /nonstop status         a slash command (its reply is shown only to you)
Break things (the bot should recover on its own):
  :drop                   reset every connection (abrupt TCP reset)
  :reset N                reset connection N (see :conns)
  :eof [N]                the connection just ends: FIN, no close frame (a proxy closing quietly)
  :silence [N]            half-open link: nothing crosses it any more
  :close [CODE]           clean close frame (default 1001)
  :refresh | :warning     Slack's refresh_requested / warning disconnect
  :outage [SECONDS]       Web API refuses connections (default 30 s), sockets dropped
  :ratelimit [SECONDS]    apps.connections.open answers 429 (default 5 s), sockets dropped
  :end                    end an outage now
  :revoke                 revoke the app token (:unrevoke to undo)
  :disable                turn Socket Mode off for the app (link_disabled)
  :lose-ack [N]           the next N acks get lost, so Slack retries
  :slow [SECONDS]         the Web API answers late (default 2 s; :slow 0 ends it)
  :stall | :nohello       new connections hang in the handshake / never get hello
  :heal                   undo :stall, :nohello, :slow, outages and :disable
  :conns                  list connections
  :help  :quit            this help / leave (Ctrl-D and Ctrl-C work too)"""


def render_message(body: dict[str, Any]) -> str:
    """Readable text of a message or ack payload: text plus section/context/header block text."""
    lines: list[str] = []
    for block in body.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        text = block.get("text")
        if isinstance(text, dict) and text.get("text"):
            label, _, value = str(text["text"]).partition("\n")
            titled = value and label.startswith("*") and label.endswith("*")
            lines.append(f"{label.strip('*')}: {value}" if titled else str(text["text"]))
        for field in block.get("fields") or []:
            if isinstance(field, dict) and field.get("text"):
                label, _, value = str(field["text"]).partition("\n")
                lines.append(f"  {label.strip('*')}: {value}" if value else f"  {label}")
        if block.get("type") == "context":
            parts = [str(e.get("text")) for e in block.get("elements") or [] if isinstance(e, dict) and e.get("text")]
            if parts:
                lines.append("  " + " · ".join(parts))
    if not lines and body.get("text"):
        lines.append(str(body["text"]))
    return re.sub(r"<@(\w+)>", r"@\1", "\n".join(lines)) or "(empty message)"


class _Chat:
    def __init__(self, sb: Sandbox, stdin: TextIO, stdout: TextIO, bot_name: str, reply_wait_s: float) -> None:
        self.sb = sb
        self.stdin = stdin
        self.stdout = stdout
        self.bot_name = bot_name
        self.reply_wait_s = reply_wait_s
        self.lock = threading.Lock()
        self.printed: set[int] = set()
        self.mention_re = re.compile(rf"(<@{BOT_USER_ID}>|@{re.escape(bot_name)}\b)", re.IGNORECASE)
        self.commands: dict[str, Callable[[list[str]], str]] = {
            ":drop": lambda a: f"reset {self._n(sb.reset())} (TCP reset, no close frame)",
            ":reset": lambda a: f"reset {self._n(sb.reset(conn=self._conn(a, required=True)))}",
            ":eof": lambda a: f"ended {self._n(sb.eof(conn=self._conn(a)))} (FIN, no close frame)",
            ":silence": lambda a: f"silenced {self._n(sb.silence(conn=self._conn(a)))}: nothing crosses any more",
            ":close": lambda a: f"sent close {self._int(a, 1001)} to {self._n(sb.close(code=self._int(a, 1001)))}",
            ":refresh": lambda a: f"sent refresh_requested to {self._n(sb.disconnect('refresh_requested'))}",
            ":warning": lambda a: f"sent warning to {self._n(sb.disconnect('warning'))}",
            ":outage": self._outage,
            ":ratelimit": self._ratelimit,
            ":end": lambda a: self._do(sb.end_outage, "outage over"),
            ":revoke": lambda a: self._do(lambda: sb.revoke("app"), "app token revoked; its sockets reset"),
            ":unrevoke": lambda a: self._do(sb.unrevoke, "tokens valid again"),
            ":lose-ack": lambda a: self._do(lambda: sb.lose_acks(self._int(a, 1)), "the next ack(s) will be lost"),
            ":disable": lambda a: self._do(sb.disable_socket_mode, "Socket Mode turned off: link_disabled sent"),
            ":slow": lambda a: self._do(
                lambda: sb.slow_api(float(self._int(a, 2))), f"Web API answers {self._int(a, 2)} s late"
            ),
            ":stall": lambda a: self._do(lambda: sb.stall_handshake(True), "new connections now hang in the handshake"),
            ":nohello": lambda a: self._do(lambda: sb.withhold_hello(True), "new connections now get no hello"),
            ":heal": lambda a: self._do(self._heal, "every fault cleared"),
            ":conns": lambda a: self._conns(),
            ":help": lambda a: HELP.format(name=bot_name),
        }

    # --- output ------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        with self.lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def on_call(self, call: ApiCall) -> None:
        if call.id in self.printed or (not call.ok and call.method != "response_url"):
            return
        params = call.params
        if call.method == "chat.postMessage":
            prefix = "    ↳ " if params.get("thread_ts") else ""
            label = f"{self.bot_name}"
        elif call.method == "chat.postEphemeral":
            prefix, label = "", f"{self.bot_name} (only you)"
        elif call.method == "chat.update":
            prefix, label = "", f"{self.bot_name} (edited)"
        elif call.method == "response_url":
            prefix, label = "", f"{self.bot_name} (only you)"
        else:
            return
        self.printed.add(call.id)
        text = render_message(params).replace("\n", "\n" + " " * (len(prefix) + len(label) + 2))
        self.say(f"{prefix}{label}: {text}")

    # --- helpers -----------------------------------------------------------------------------
    def _heal(self) -> None:
        self.sb.stall_handshake(False)
        self.sb.withhold_hello(False)
        self.sb.slow_api(0)
        self.sb.enable_socket_mode()
        if self.sb.outage_active():
            self.sb.end_outage()

    @staticmethod
    def _do(action: Callable[[], object], message: str) -> str:
        action()
        return message

    @staticmethod
    def _n(ids: list[str]) -> str:
        return f"{len(ids)} connection(s)" + (f" ({', '.join(ids)})" if ids else "")

    @staticmethod
    def _int(args: list[str], default: int) -> int:
        return int(args[0]) if args else default

    @staticmethod
    def _conn(args: list[str], required: bool = False) -> str | None:
        if not args:
            if required:
                raise ValueError("which connection? e.g. ':reset 1' (see :conns)")
            return None
        return args[0] if args[0].startswith("c") else f"c{args[0]}"

    def _outage(self, args: list[str]) -> str:
        seconds = self._int(args, 30)
        self.sb.outage(seconds, mode="refused", drop_connections=True)
        return f"Web API down (connection refused) for {seconds} s; sockets dropped"

    def _ratelimit(self, args: list[str]) -> str:
        seconds = self._int(args, 5)
        self.sb.outage(seconds, mode="ratelimited", retry_after=1, drop_connections=True)
        return f"apps.connections.open rate-limited (429, Retry-After: 1) for {seconds} s; sockets dropped"

    def _conns(self) -> str:
        conns = self.sb.connections()
        if not conns:
            return "no connections yet"
        return "\n".join(
            f"  {c.id:<4} {c.state:<9} {c.close_how or c.disconnect_reason or ''}".rstrip() for c in conns[-12:]
        )

    # --- input -------------------------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """Returns False when the user wants to leave."""
        if not line:
            return True
        if line.startswith(":"):
            name, *args = line.split()
            if name in (":quit", ":q", ":exit"):
                return False
            command = self.commands.get(name.lower())
            self.say(command(args) if command else f"unknown command {name!r}; try :help")
        elif line.startswith("/"):
            command, _, text = line.partition(" ")
            self._wait_ack(self.sb.slash_command(text.strip(), command=command))
        elif self.mention_re.search(line):
            text = self.mention_re.sub("", line, count=1).strip()
            self._wait_reply(self.sb.mention(text))
        else:
            self.say(f"(the bot only hears mentions: try '@{self.bot_name} {line}')")
        return True

    def _wait_ack(self, d: Delivery) -> None:
        try:
            ack = self.sb.wait_for_ack(d, timeout=self.reply_wait_s)
        except TimeoutError:
            self.say(f"(no answer from {self.bot_name}: Slack would show this command failed)")
            return
        if ack.payload:
            self.say(f"{self.bot_name} (only you): {render_message(ack.payload)}")

    def _wait_reply(self, d: Delivery) -> None:
        try:
            self.sb.wait_until(lambda: self.sb.replies_to(d), timeout=self.reply_wait_s, what="a reply")
        except TimeoutError:
            self.say("(no reply yet; it will show up here when the bot answers)")

    def run(self) -> None:
        unsubscribe = self.sb.subscribe(self.on_call)
        self.say(f"Chatting with {self.bot_name} in #general. Type :help for commands, :quit to leave.")
        try:
            while True:
                with self.lock:
                    self.stdout.write("you> ")
                    self.stdout.flush()
                line = self.stdin.readline()
                if not line:  # Ctrl-D / end of piped input
                    self.say("")
                    break
                try:
                    if not self.handle(line.strip()):
                        break
                except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                    self.say(f"error: {exc}")
        except KeyboardInterrupt:
            self.say("")
        finally:
            unsubscribe()
        self.say("bye")


def run_chat(
    sb: Sandbox,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    bot_name: str = "Nonstop",
    reply_wait_s: float = 5.0,
) -> None:
    """Interactive chat: lines mentioning the bot become app_mention events, `/cmd` slash commands,
    `:word` fault commands. Returns on :quit, end of input or Ctrl-C."""
    _Chat(sb, stdin, stdout, bot_name, reply_wait_s).run()
