"""Harness floor for the ack-latency rows: a bare WebSocket client that acks every envelope at once.

    python bench/floor_client.py API_URL APP_TOKEN BOT_TOKEN

No Bolt: it acks each envelope the moment it reads it, then posts a threaded reply from a pool of
16 threads, like the bots do. What is left in its ack latency is what the sandbox and this machine
add to any bot's number.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from websockets.sync.client import connect

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(api_url: str, method: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        api_url + method,
        data=json.dumps(body or {}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
    )
    with OPENER.open(request, timeout=10) as response:
        return json.loads(response.read())


def main(api_url: str, app_token: str, bot_token: str) -> None:
    url = call(api_url, "apps.connections.open", app_token)["url"]
    pool = ThreadPoolExecutor(max_workers=16)

    def reply(event: dict[str, Any]) -> None:
        call(api_url, "chat.postMessage", bot_token, {"channel": event["channel"], "text": "pong",
                                                      "thread_ts": event["ts"]})  # fmt: skip

    with connect(url, proxy=None, ping_interval=None) as ws:
        for raw in ws:
            message = json.loads(raw)
            if isinstance(message, dict) and "envelope_id" in message:
                ws.send(json.dumps({"envelope_id": message["envelope_id"]}))
                event = (message.get("payload") or {}).get("event")
                if isinstance(event, dict) and event.get("ts"):
                    pool.submit(reply, event)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
