"""`python -m sandbox`: run the sandbox as a process.

The first line on stdout is one JSON object with its URLs and tokens (for scripts); then, for people,
how to point a bot at it and how to drive it (docs/sandbox.md has the whole control API).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading

from sandbox.config import HISTORY_SCOPES, READ_SCOPES, SandboxConfig
from sandbox.limits import RateLimits
from sandbox.server import Sandbox
from sandbox.tls import SandboxTLS


def parse_args(argv: list[str] | None = None) -> tuple[SandboxConfig, bool]:
    defaults = SandboxConfig()
    p = argparse.ArgumentParser(prog="python -m sandbox", description="A local Slack with fault injection.")
    p.add_argument("--host", default=defaults.host, help="bind address (keep it loopback)")
    p.add_argument("--api-port", type=int, default=defaults.api_port, help="Web API port (0: any)")
    p.add_argument("--ws-port", type=int, default=defaults.ws_port, help="Socket Mode port (0: any)")
    p.add_argument("--control-port", type=int, default=defaults.control_port, help="control API port (0: any)")
    p.add_argument("--ack-deadline", type=float, default=defaults.ack_deadline_s)
    p.add_argument("--retry-delays", default=",".join(f"{d:g}" for d in defaults.retry_delays_s), help="e.g. 0,60,300")
    p.add_argument("--max-connections", type=int, default=defaults.max_connections)
    p.add_argument("--ping-interval", type=float, default=defaults.server_ping_interval_s)
    p.add_argument("--lifetime", type=float, default=defaults.connection_lifetime_s, help="connection lifetime (s)")
    p.add_argument("--warning-grace", type=float, default=defaults.warning_grace_s)
    p.add_argument("--refresh-grace", type=float, default=defaults.refresh_grace_s)
    p.add_argument("--silent-link-alive", type=float, default=defaults.silent_link_alive_s)
    p.add_argument("--ticket-ttl", type=float, default=defaults.ticket_ttl_s)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--tls", action="store_true", help="https:// and wss:// with a throwaway CA (its file is printed)")
    limits = p.add_argument_group("the Web API's rate limits (docs/sandbox-model.md#rate-limits)")
    limits.add_argument("--no-rate-limits", action="store_true", help="never answer 429 (they are on by default)")
    limits.add_argument(
        "--post-rate",
        type=float,
        default=defaults.post_per_channel_per_s,
        help="chat.postMessage per second, per channel",
    )
    limits.add_argument(
        "--post-burst", type=int, default=defaults.post_burst, help="chat.postMessage's burst, per channel"
    )
    limits.add_argument(
        "--tiers", default=",".join(map(str, defaults.tier_per_minute)), help="calls per minute of Tiers 1-4"
    )
    scopes = p.add_argument_group("the bot token's scopes")
    scopes.add_argument("--scopes", default=",".join(defaults.bot_scopes), help="comma-separated (the manifest's)")
    scopes.add_argument(
        "--history-scopes", action="store_true", help="grant the *:history and *:read scopes too (catch-up reads)"
    )
    a = p.parse_args(argv)
    try:
        tiers = tuple(int(x) for x in a.tiers.split(",") if x.strip())
    except ValueError:
        tiers = ()
    if len(tiers) != 4:
        p.error("--tiers takes four whole numbers, e.g. 1,20,50,100")
    bot_scopes = tuple(x.strip() for x in a.scopes.split(",") if x.strip())
    if a.history_scopes:
        bot_scopes = tuple(dict.fromkeys((*bot_scopes, *HISTORY_SCOPES, *READ_SCOPES)))
    config = SandboxConfig(
        host=a.host,
        api_port=a.api_port,
        ws_port=a.ws_port,
        control_port=a.control_port,
        ack_deadline_s=a.ack_deadline,
        retry_delays_s=tuple(float(x) for x in a.retry_delays.split(",") if x.strip()),
        max_connections=a.max_connections,
        server_ping_interval_s=a.ping_interval,
        connection_lifetime_s=a.lifetime,
        warning_grace_s=a.warning_grace,
        refresh_grace_s=a.refresh_grace,
        silent_link_alive_s=a.silent_link_alive,
        ticket_ttl_s=a.ticket_ttl,
        seed=a.seed,
        rate_limits=not a.no_rate_limits,
        post_per_channel_per_s=a.post_rate,
        post_burst=a.post_burst,
        tier_per_minute=tiers,  # type: ignore[arg-type]  # four, checked above
        bot_scopes=bot_scopes,
    )
    try:
        RateLimits(on=True, post_per_channel_per_s=a.post_rate, post_burst=a.post_burst, tier_per_minute=tiers)
    except ValueError as exc:
        p.error(str(exc))
    return config, a.tls


def instructions(info: dict[str, object]) -> str:
    """How to run a bot against this sandbox and drive it, ready to paste."""
    env = (
        f"SLACK_API_URL={shlex.quote(str(info['api_url']))} SLACK_BOT_TOKEN={shlex.quote(str(info['bot_token']))} "
        f"SLACK_APP_TOKEN={shlex.quote(str(info['app_token']))}"
    )
    if info.get("ca_file"):
        env += f" SSL_CERT_FILE={shlex.quote(str(info['ca_file']))}"
    control = str(info["control_url"])
    return f"""\
A local Slack is running. Point a bot at it (in another terminal, from the repository):

    {env} HEALTH_PORT=0 python app.py

Any Bolt app works the same way: its WebClient's base_url is SLACK_API_URL, its tokens are the two above.
Then act as a user, break things, and read back what the bot did:

    curl -s -X POST {control}mention -d '{{"text": "ping"}}'
    curl -s -X POST {control}reset -d '{{}}'
    curl -s {control}bot_messages

or from Python:  from sandbox.remote import RemoteSandbox; sb = RemoteSandbox({control!r})
Every verb: docs/sandbox.md. Ctrl-C stops the sandbox."""


def main(argv: list[str] | None = None) -> int:
    config, tls_on = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tls = SandboxTLS() if tls_on else None
    try:
        with Sandbox(config, tls=tls) as sb:
            info = {
                "api_url": sb.api_url,
                "bot_token": sb.bot_token,
                "app_token": sb.app_token,
                "control_url": sb.control_url,
                "ws_port": sb.ws_port,
                "ca_file": tls.ca_file if tls else None,
            }
            print(json.dumps(info), flush=True)
            print(instructions(info), flush=True)
            if tls is not None:
                print(f"sandbox: TLS on; to trust it, set SSL_CERT_FILE={tls.ca_file}", file=sys.stderr, flush=True)
            stop.wait()
    finally:
        if tls is not None:
            tls.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
