"""The Home tab end to end: the real bot process (`python app.py`) against the sandbox."""

from __future__ import annotations

from sandbox import Sandbox
from tests.botprocess import bot_env, run_bot


def home_texts(view: dict) -> str:
    texts = []
    for block in view["blocks"]:
        texts.append(block.get("text", {}).get("text", ""))
        texts += [field["text"] for field in block.get("fields", [])]
    return "\n".join(texts)


def test_home_tab_shows_live_status_and_check_connection_updates_it(sandbox: Sandbox) -> None:
    with run_bot(bot_env(sandbox)) as bot:
        sandbox.wait_for_connections(2, timeout=15)
        bot.wait_for_log(r"connection #2: connected", timeout=10)

        opened = sandbox.open_app_home()
        sandbox.wait_for_outcome(opened, ("acked",))
        first = sandbox.wait_until(sandbox.home_view, timeout=10, what="a published Home view")
        text = home_texts(first)
        assert "Nonstop status: connected" in text
        assert "*Live connections*\n2 of 2" in text
        assert "*Last drop*\nnever" in text
        assert "Last check" not in text

        sandbox.reset(conn=sandbox.connections(live_only=True)[0].id)
        sandbox.wait_until(lambda: len(sandbox.connections(live_only=True)) == 2 and len(sandbox.connections()) == 3,
                           timeout=15, what="the reset link replaced")  # fmt: skip

        clicked = sandbox.click("check_connection")
        ack = sandbox.wait_for_ack(clicked, timeout=10)
        assert ack.payload is None, "a click has nothing to say in the ack"
        assert not ack.late
        updated = sandbox.wait_until(
            lambda: (view := sandbox.home_view()) and "Last check" in home_texts(view) and view,
            timeout=10,
            what="the Home view updated by Check connection",
        )
        text = home_texts(updated)
        assert updated["id"] == first["id"]
        assert "Web API answered in " in text
        assert "*Reconnects*\n1 (reset 1)" in text
        assert "1006 abnormal closure" in text, "the last drop, in words"
        assert bot.proc.poll() is None
