"""run_chat driven through piped stdin against a tiny Bolt bot."""

import io

from sandbox.chat import ChatOutput, render_message, run_chat
from tests.sandbox.bots import running_bot


def chat(sb, script, **kwargs):
    out = io.StringIO()
    run_chat(sb, stdin=io.StringIO(script), stdout=out, **kwargs)
    return out.getvalue()


def test_chat_mention_slash_and_faults(sandbox):
    with running_bot(sandbox):
        sandbox.wait_for_connections(1)
        script = "\n".join(
            [
                "@Nonstop ping",
                "/nonstop status",
                "hello there",
                ":conns",
                ":refresh",
                ":bogus",
                ":reset",
                ":close nope",
                ":slow 0.5",
                ":slow 0",
                ":help",
                ":quit",
                "@nonstop never sent",
            ]
        )
        out = chat(sandbox, script + "\n")
    assert "you> " in out
    assert "    ↳ Nonstop: pong @U0HUMAN01" in out
    assert out.count("pong @U0HUMAN01") == 1  # printed once
    assert "Nonstop (only you): status status: all good" in out
    assert "1 connection" in out
    assert "the bot only hears mentions" in out
    assert "c1" in out
    assert "sent refresh_requested to 1 connection(s) (c1)" in out
    assert "unknown command ':bogus'" in out
    assert "error: which connection?" in out
    assert "error: invalid literal" in out
    assert "the Web API answers 0.5 s late" in out
    assert "the Web API answers on time again" in out
    assert ":lose-ack" in out
    assert out.rstrip().endswith("bye")
    assert len(sandbox.calls("chat.postMessage")) == 1  # nothing after :quit
    assert "Traceback" not in out


def test_without_a_bot_the_chat_says_what_slack_would(sandbox):
    out = chat(sandbox, "/nonstop status\n@Nonstop ping\n")  # no bot connected; end of input waits for both
    assert '(Slack shows: /nonstop failed with the error "dispatch_failed")' in out
    assert "(Slack gave up on your message after 4 tries: no connection of the bot acknowledged it." in out
    assert out.index(" answer(s) in flight; Ctrl-C to leave now)") < out.index("Slack gave up"), "EOF waits for it"
    assert out.rstrip().endswith("bye")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_printed_while_the_prompt_is_shown_redraw_it_on_a_terminal():
    screen = Terminal()
    output = ChatOutput(screen, interactive=True)
    output.prompt()
    output.write("  · connection #1 dropped\n  · connection #1: conn")
    output.write("ected\n")
    output.entered()
    output.line("reset 1 connection(s)")
    assert screen.getvalue() == (
        "you> "
        "\r\x1b[K  · connection #1 dropped\nyou> "
        "\r\x1b[K  · connection #1: connected\nyou> "
        "reset 1 connection(s)\n"
    )


def test_on_a_pipe_lines_start_on_a_fresh_line_without_escape_codes():
    piped = io.StringIO()
    output = ChatOutput(piped, interactive=False)
    output.prompt()
    output.line("late reply")
    output.line("another")
    assert piped.getvalue() == "you> \nlate reply\nanother\n"


def test_render_message_blocks():
    body = {
        "text": "fallback",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Status"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*a* 1"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "x"}, {"type": "image"}]},
        ],
    }
    assert render_message(body) == "Status\n  a 1\n  x"
    card = {
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Nonstop status: connected*"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Uptime*\n3 s"}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Last drop*\nnever &lt;yet&gt;"}},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Check"}}]},
        ]
    }
    assert render_message(card) == "Nonstop status: connected\n  Uptime: 3 s\n  Last drop: never <yet>\n  [Check]"
    assert render_message({"text": "hi <@U1>"}) == "hi @U1"
