"""Harness floor for the answer rows: a bare asyncio client that acks every envelope and answers it.

    python bench/asyncio_floor.py API_URL APP_TOKEN BOT_TOKEN

No Bolt, no threads: one event loop reads the socket, acks each envelope the moment it reads it, and posts
a threaded reply with a hand-written HTTP/1.1 POST on a connection of its own (as many at once as there
are envelopes). What is left in its "all answered" time is what the sandbox and this machine add to any
bot's; issue 17 asks Nonstop to answer a burst within twice this.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect


def open_url(api_url: str, app_token: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(api_url + "apps.connections.open", data=b"",
                                     headers={"Authorization": f"Bearer {app_token}"})  # fmt: skip
    with opener.open(request, timeout=10) as response:
        return str(json.loads(response.read())["url"])


async def post(api_url: str, token: str, body: dict[str, Any]) -> None:
    url = urlsplit(api_url + "chat.postMessage")
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
    head = (
        f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
    await reader.read()  # the answer, until the server closes
    writer.close()


async def main(api_url: str, app_token: str, bot_token: str) -> None:
    tasks: set[asyncio.Task[None]] = set()
    async with connect(open_url(api_url, app_token), proxy=None, ping_interval=None) as ws:
        async for raw in ws:
            message = json.loads(raw)
            if not isinstance(message, dict) or "envelope_id" not in message:
                continue
            await ws.send(json.dumps({"envelope_id": message["envelope_id"]}))
            event = (message.get("payload") or {}).get("event")
            if isinstance(event, dict) and event.get("ts"):
                body = {"channel": event["channel"], "text": "pong", "thread_ts": event["ts"]}
                task = asyncio.get_running_loop().create_task(post(api_url, bot_token, body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
