"""Harness floor for the ack-latency row: a bare WebSocket client that acks every envelope at once.

    python bench/floor_client.py API_URL APP_TOKEN

No Bolt, no handlers, no replies: what the sandbox and this machine add to any bot's ack latency.
"""

from __future__ import annotations

import json
import sys
import urllib.request

from websockets.sync.client import connect


def main(api_url: str, app_token: str) -> None:
    request = urllib.request.Request(
        api_url + "apps.connections.open", data=b"", headers={"Authorization": f"Bearer {app_token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        url = json.loads(response.read())["url"]
    with connect(url, proxy=None, ping_interval=None) as ws:
        for raw in ws:
            message = json.loads(raw)
            if isinstance(message, dict) and "envelope_id" in message:
                ws.send(json.dumps({"envelope_id": message["envelope_id"]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
