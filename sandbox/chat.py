"""A terminal chat with a bot through the sandbox, plus one-word fault commands.

Input is never blocked by an answer in flight: the bot's messages are printed when the sandbox sees
them, and what became of each delivery is reported as Slack would show it (a slash command that
failed, a mention Slack gave up on). Lines printed while you type redraw the prompt.
"""

from __future__ import annotations

import contextlib
import html
import io
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from sandbox.config import BOT_USER_ID
from sandbox.records import ApiCall, Delivery, DeliveryRecord
from sandbox.server import Sandbox

PROMPT = "you> "

HELP = """\
Talk to the bot:
  @{name} ping            mention the bot (any line that mentions it works)
  /nonstop status         a slash command (its reply is shown only to you)
  :home                   open the bot's Home tab (app_home_opened)
  :click [ACTION_ID]      click a button in the Home tab (default: the first one)
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
  :revoke | :unrevoke     revoke the app token (the bot stops: retrying cannot help) / make it valid again
  :disable                turn Socket Mode off for the app (link_disabled)
  :lose-ack [N]           the next N acks get lost, so Slack retries
  :slow [SECONDS]         the Web API answers late (default 2 s; :slow 0 ends it)
  :stall | :nohello       new connections hang in the handshake / never get hello
  :heal                   undo :stall, :nohello, :slow, outages and :disable
  :conns                  list connections
  :help  :quit            this help / leave (Ctrl-D and Ctrl-C work too)"""

SETTLE_S = 10.0
"""How long an acked mention may take to be answered before the chat stops waiting for it on :quit."""


def _mrkdwn_text(text: str) -> str:
    """Plain text of mrkdwn: no *bold* markers, entities decoded."""
    return html.unescape(re.sub(r"\*([^*\n]+)\*", r"\1", text.strip()))


def _labelled(text: str) -> str:
    """'*Label*\\nvalue' as '  Label: value'; any other text as it is."""
    label, _, value = str(text).partition("\n")
    if value and label.startswith("*") and label.endswith("*"):
        return f"  {label.strip('*')}: {html.unescape(value)}"
    return _mrkdwn_text(str(text))


def render_message(body: dict[str, Any]) -> str:
    """Readable text of a message, ack payload or view: header/section/field/context/button text."""
    lines: list[str] = []
    for block in body.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        text = block.get("text")
        if isinstance(text, dict) and text.get("text"):
            lines.append(_labelled(str(text["text"])))
        for field in block.get("fields") or []:
            if isinstance(field, dict) and field.get("text"):
                line = _labelled(str(field["text"]))
                lines.append(line if line.startswith("  ") else "  " + line)
        elements = [e for e in block.get("elements") or [] if isinstance(e, dict)]
        if block.get("type") == "context":
            parts = [_mrkdwn_text(str(e["text"])) for e in elements if e.get("text")]
            if parts:
                lines.append("  " + " · ".join(parts))
        if block.get("type") == "actions":
            labels = [f"[{e['text']['text']}]" for e in elements if isinstance(e.get("text"), dict)]
            if labels:
                lines.append("  " + " ".join(labels))
    if not lines and body.get("text"):
        lines.append(_mrkdwn_text(str(body["text"])))
    return re.sub(r"<@(\w+)>", r"@\1", "\n".join(lines)) or "(empty message)"


class ChatOutput(io.TextIOBase):
    """The terminal, shared by the chat, the sandbox's callbacks and log handlers (it is file-like).

    A line printed while the prompt is shown goes above it: on a terminal the prompt (and what was
    typed so far) is redrawn; on a pipe the line simply starts on a fresh line."""

    def __init__(self, stdout: TextIO, interactive: bool) -> None:
        super().__init__()
        self.stdout = stdout
        self.interactive = interactive
        self._lock = threading.RLock()
        self._prompt_shown = False
        self._partial = ""

    def line(self, text: str) -> None:
        with self._lock:
            if self._prompt_shown:
                self.stdout.write("\r\x1b[K" if self.interactive else "\n")
            self.stdout.write(text + "\n")
            if self._prompt_shown and self.interactive:
                self.stdout.write(PROMPT + _typed_so_far())
            else:
                self._prompt_shown = False
            self.stdout.flush()

    def prompt(self) -> None:
        with self._lock:
            self.stdout.write(PROMPT)
            self.stdout.flush()
            self._prompt_shown = True

    def entered(self) -> None:
        """The user pressed Enter: the cursor is on a fresh line."""
        with self._lock:
            self._prompt_shown = False

    def write(self, s: str) -> int:  # for logging.StreamHandler
        with self._lock:
            self._partial += s
            *complete, self._partial = self._partial.split("\n")
            for text in complete:
                self.line(text)
        return len(s)

    def flush(self) -> None:
        with self._lock:
            self.stdout.flush()


def _typed_so_far() -> str:
    readline = sys.modules.get("readline")
    return readline.get_line_buffer() if readline is not None else ""  # type: ignore[attr-defined]


@dataclass
class _Pending:
    delivery: Delivery
    what: str  # "your message", "/nonstop", "app_home_opened", "your click"
    acked_at: float | None = None


class Chat:
    def __init__(
        self,
        sb: Sandbox,
        *,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        bot_name: str = "Nonstop",
        settle_s: float = SETTLE_S,
    ) -> None:
        self.sb = sb
        self.stdin = stdin
        interactive = stdin.isatty() and stdout.isatty()
        self.output = ChatOutput(stdout, interactive)
        self.bot_name = bot_name
        self.settle_s = settle_s
        self.printed: set[int] = set()
        self.pending: dict[str, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
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
            ":slow": self._slow,
            ":stall": lambda a: self._do(lambda: sb.stall_handshake(True), "new connections now hang in the handshake"),
            ":nohello": lambda a: self._do(lambda: sb.withhold_hello(True), "new connections now get no hello"),
            ":heal": lambda a: self._do(self._heal, "every fault cleared"),
            ":conns": lambda a: self._conns(),
            ":home": self._home,
            ":click": self._click,
            ":help": lambda a: HELP.format(name=bot_name),
        }

    # --- output ------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.output.line(text)

    def on_call(self, call: ApiCall) -> None:
        """The bot's visible output, as the sandbox answers its Web API calls (sandbox thread)."""
        if call.id in self.printed or (not call.ok and call.method != "response_url"):
            return
        params = call.params
        if call.method == "chat.postMessage":
            prefix, label = ("    ↳ " if params.get("thread_ts") else ""), self.bot_name
        elif call.method in ("chat.postEphemeral", "response_url"):
            prefix, label = "", f"{self.bot_name} (only you)"
        elif call.method == "chat.update":
            prefix, label = "", f"{self.bot_name} (edited)"
        elif call.method == "views.publish" and isinstance(params.get("view"), dict):
            prefix, label, params = "", f"{self.bot_name} Home tab (updated)", params["view"]
        else:
            return
        self.printed.add(call.id)
        text = render_message(params).replace("\n", "\n" + " " * (len(prefix) + len(label) + 2))
        self.say(f"{prefix}{label}: {text}")

    # --- what became of each delivery -----------------------------------------------------------
    def _track(self, d: Delivery, what: str) -> None:
        with self._pending_lock:
            self.pending[d.key] = _Pending(d, what)

    def _settled(self, p: _Pending, r: DeliveryRecord, now: float) -> str | None:
        """None while still in flight; else what to tell the user ("" for nothing)."""
        kind = p.delivery.kind
        if r.outcome == "acked":
            if kind == "slash_commands":
                return f"{self.bot_name} (only you): {render_message(r.ack_payload)}" if r.ack_payload else ""
            if p.what == "your message" and not self.sb.replies_to(p.delivery):
                p.acked_at = p.acked_at or now
                return None if now - p.acked_at < self.settle_s else ""
            return ""
        if r.outcome == "exhausted":
            tries = len(r.attempts)
            return (
                f"(Slack gave up on {p.what} after {tries} tries: no connection of the bot acknowledged it. "
                f"In Slack it just goes unanswered.)"
            )
        if r.outcome in ("timeout", "dispatch_failed"):
            if kind == "slash_commands":
                error = "operation_timeout" if r.outcome == "timeout" else "dispatch_failed"
                return f'(Slack shows: {p.what} failed with the error "{error}")'
            return f"(Slack shows that {p.what} failed: {r.outcome})"
        return None

    def _settle(self) -> bool:
        """Report every delivery that has settled; True when nothing is in flight."""
        now = time.monotonic()
        with self._pending_lock:
            items = list(self.pending.items())
        for key, p in items:
            message = self._settled(p, self.sb.delivery(p.delivery), now)
            if message is None:
                continue
            with self._pending_lock:
                mine = self.pending.pop(key, None) is not None  # the watcher and :quit both settle
            if mine and message:
                self.say(message)
        with self._pending_lock:
            return not self.pending

    def _watch(self) -> None:
        def settle_until_stopped() -> bool:
            self._settle()
            return self._stop.is_set()

        while not self._stop.is_set():
            try:  # wakes whenever the sandbox records something, and at least every 0.25 s
                self.sb.wait_until(settle_until_stopped, timeout=60)
            except TimeoutError:
                continue

    def _drain(self) -> None:
        """Leaving: wait for what is in flight (Slack's retries end on their own), unless interrupted."""
        with self._pending_lock:
            waiting = len(self.pending)
        if not waiting:
            return
        self.say(f"(waiting for {waiting} answer(s) in flight; Ctrl-C to leave now)")
        with contextlib.suppress(KeyboardInterrupt):
            self.sb.wait_until(self._settle, timeout=3600, what="answers in flight")

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

    def _slow(self, args: list[str]) -> str:
        seconds = float(args[0]) if args else 2.0
        self.sb.slow_api(seconds)
        return f"the Web API answers {seconds:g} s late" if seconds > 0 else "the Web API answers on time again"

    def _home(self, args: list[str]) -> str:
        self._track(self.sb.open_app_home(), "app_home_opened")
        return "you opened the Home tab"

    def _click(self, args: list[str]) -> str:
        view = self.sb.home_view()
        if view is None:
            raise ValueError("no Home tab yet: :home first")
        elements = [e for block in view.get("blocks", []) for e in block.get("elements", []) if isinstance(e, dict)]
        buttons = [e for e in elements if e.get("action_id")]
        chosen = next((e for e in buttons if not args or e["action_id"] == args[0]), None)
        if chosen is None:
            raise ValueError(f"no button {args[0]!r}; buttons: {', '.join(e['action_id'] for e in buttons) or 'none'}")
        self._track(self.sb.click(chosen["action_id"]), "your click")
        return f"you clicked [{chosen.get('text', {}).get('text', chosen['action_id'])}]"

    def _conns(self) -> str:
        conns = self.sb.connections()
        if not conns:
            return "no connections yet"
        return "\n".join(
            f"  {c.id:<4} {c.state:<9} {c.close_how or c.disconnect_reason or ''}".rstrip() for c in conns[-12:]
        )

    # --- input -------------------------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """Returns False when the user wants to leave. Never waits for the bot."""
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
            self._track(self.sb.slash_command(text.strip(), command=command), command)
        elif self.mention_re.search(line):
            text = self.mention_re.sub("", line, count=1).strip()
            self._track(self.sb.mention(text), "your message")
        else:
            self.say(f"(the bot only hears mentions: try '@{self.bot_name} {line}')")
        return True

    def _read_line(self) -> str:
        if self.output.interactive:
            try:
                return input() + "\n"  # with readline when available: editing, history, redraw
            except EOFError:
                return ""
        return self.stdin.readline()

    def run(self) -> None:
        if self.output.interactive:
            with contextlib.suppress(ImportError):  # line editing for input(); absent on some platforms
                import readline  # noqa: F401, PLC0415
        unsubscribe = self.sb.subscribe(self.on_call)
        watcher = threading.Thread(target=self._watch, name="chat-watcher", daemon=True)
        watcher.start()
        self.say(f"Chatting with {self.bot_name} in #general. Type :help for commands, :quit to leave.")
        try:
            while True:
                self.output.prompt()
                line = self._read_line()
                self.output.entered()
                if not line:  # Ctrl-D / end of piped input
                    self.say("")
                    break
                try:
                    if not self.handle(line.strip()):
                        break
                except (ValueError, KeyError, LookupError, TypeError, RuntimeError) as exc:
                    self.say(f"error: {exc}")
            self._drain()
        except KeyboardInterrupt:
            self.say("")
        finally:
            self._stop.set()
            watcher.join(timeout=5)
            unsubscribe()
        self.say("bye")


def run_chat(
    sb: Sandbox,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    bot_name: str = "Nonstop",
    settle_s: float = SETTLE_S,
) -> None:
    """Interactive chat: lines mentioning the bot become app_mention events, `/cmd` slash commands,
    `:word` fault commands. Returns on :quit, end of input or Ctrl-C."""
    Chat(sb, stdin=stdin, stdout=stdout, bot_name=bot_name, settle_s=settle_s).run()
