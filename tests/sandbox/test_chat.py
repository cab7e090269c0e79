"""run_chat driven through piped stdin against a tiny Bolt bot."""

import io

from sandbox.chat import render_message, run_chat
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
                ":help",
                ":quit",
                "@nonstop never sent",
            ]
        )
        out = chat(sandbox, script + "\n")
    assert "you> " in out
    assert "    ↳ Nonstop: pong @U0HUMAN01" in out
    assert out.count("pong @U0HUMAN01") == 1  # printed once
    assert "Nonstop (only you): *status* status: all good" in out
    assert "1 connection" in out
    assert "the bot only hears mentions" in out
    assert "c1" in out
    assert "sent refresh_requested to 1 connection(s) (c1)" in out
    assert "unknown command ':bogus'" in out
    assert "error: which connection?" in out
    assert "error: invalid literal" in out
    assert ":lose-ack" in out
    assert out.rstrip().endswith("bye")
    assert len(sandbox.calls("chat.postMessage")) == 1  # nothing after :quit
    assert "Traceback" not in out


def test_chat_ends_on_eof_and_reports_missing_answers(sandbox):
    out = chat(sandbox, "/nonstop status\n@Nonstop ping\n", reply_wait_s=0.3)
    assert "Slack would show this command failed" in out
    assert "no reply yet" in out
    assert out.rstrip().endswith("bye")


def test_render_message_blocks():
    body = {
        "text": "fallback",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Status"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*a* 1"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "x"}, {"type": "image"}]},
        ],
    }
    assert render_message(body) == "Status\n  *a* 1\n  x"
    assert render_message({"text": "hi <@U1>"}) == "hi @U1"
