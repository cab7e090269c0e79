"""Configuration of a local Slack sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field

# Fixed identities of the emulated workspace (§8 of the protocol notes).
TEAM_ID = "T0EMUL001"
TEAM_NAME = "Emulated Workspace"
TEAM_DOMAIN = "emulated"
APP_ID = "A0EMUL001"
BOT_USER_ID = "U0BOT0001"
BOT_ID = "B0EMUL001"
BOT_USER_NAME = "nonstop"
HUMAN_USER_ID = "U0HUMAN01"
HUMAN_USER_NAME = "alice"
GENERAL_CHANNEL = "C0GENERAL"
VERIFICATION_TOKEN = "ZZZZZZWSxiZZZ2yIvs3peJ"
APPLINK_HOST = "applink-emul-1"
SERVER_PING_PAYLOAD = "Ping from applink-emul"
# What an install without catch-up's scopes grants (manifest.yml asks for the history and read scopes too: tests
# that model them add HISTORY_SCOPES and READ_SCOPES, so the answer path's lookups and catch-up stay opt-in here).
BOT_SCOPES = "app_mentions:read,chat:write,commands"
# What a bot needs to read the conversations it is in (catch-up, looking before re-posting) [DOC].
HISTORY_SCOPES = ("channels:history", "groups:history", "im:history", "mpim:history")
READ_SCOPES = ("channels:read", "groups:read", "im:read", "mpim:read")  # users.conversations by kind [DOC]


@dataclass(frozen=True)
class SandboxConfig:
    """Knobs of the sandbox. Defaults mimic production Slack; tests shrink the timers.

    Source tags (docs/sandbox-model.md has the full list): [DOC] Slack's docs, [SDK] Slack's SDK source,
    [OBS] seen in real traffic or issue logs, [EXP] checked by experiment, [INF] inference: an assumption.
    """

    host: str = "127.0.0.1"
    api_port: int = 0  # 0: chosen by the OS
    ws_port: int = 0
    control_port: int = 0  # separate listener for /_sandbox/ that survives "refused" outages
    # One budget per delivery attempt, covering both waiting for a routable connection and the ack
    # [DOC: 3 s for HTTP events, commands and interactions; INF: the same for Socket Mode; OBS: socket
    # retries carry retry_reason "timeout"].
    ack_deadline_s: float = 3.0
    # Events API retries: nearly at once, after 1 min, after 5 min [DOC: HTTP Events API; OBS-3p: the same
    # over sockets, vercel/chat #666]. Commands and interactions are never retried [INF].
    retry_delays_s: tuple[float, ...] = field(default=(0.0, 60.0, 300.0))
    max_connections: int = 10  # [DOC: "up to 10" connections; OBS: too_many_websockets, bolt-js #2225]
    server_ping_interval_s: float = 10.0  # Slack pings, interval undocumented [OBS: payload; INF: 10 s]
    connection_lifetime_s: float = 3600.0  # [DOC: 3600 in the hello sample; OBS: ~5 h in production]
    warning_grace_s: float = 10.0  # [DOC: warning "about 10 seconds before the disconnect"]
    refresh_grace_s: float = 1.0  # TCP dropped after refresh_requested [OBS: node changelog; INF: 1 s]
    # How long "Slack" goes on counting a silent (half-open) connection and routing to it before it
    # notices. Slack pings every socket, but a ping sent into a dead path is just retransmitted by TCP;
    # with no application-level pong deadline (none is documented or observed) the server's kernel gives
    # up after its retransmission limit, ~15 min with Linux defaults (tcp_retries2=15) [INF]. It can be
    # much longer: python-slack-sdk #1940 shows hello counting ten connections for one live connection
    # 1.5 h after half-open reconnects, and node-slack-sdk #2709 a cap of 10 that freed after ~2 h [OBS].
    # float("inf"): never noticed.
    silent_link_alive_s: float = 900.0
    ticket_ttl_s: float = 60.0  # single-use ticket URLs [SDK: always a fresh URL; INF: the TTL]
    close_handshake_timeout_s: float = 2.0  # how long a server close frame waits for the client to drop TCP
    seed: int = 0  # tokens and the random choices (retry routing, lost first acks)
    # --- the Web API's limits (sandbox/limits.py has the model and its sources) ---
    rate_limits: bool = True  # off in tests (sandbox.testing.TEST_CONFIG) unless a test turns them on
    post_per_channel_per_s: float = 1.0  # chat.postMessage: 1 per second per channel [DOC]
    post_burst: int = 4  # ... with short bursts [DOC]; how many is not published [INF]
    tier_per_minute: tuple[int, int, int, int] = (1, 20, 50, 100)  # Tiers 1-4: "N+ per minute" [DOC]
    # --- the bot token's scopes (sandbox/scopes.py): the manifest's by default ---
    bot_scopes: tuple[str, ...] = tuple(BOT_SCOPES.split(","))
    # conversations.replies with a bot token in a channel (not a DM): Slack's page says bot tokens "lack
    # sufficient permissions" there [DOC], bots read channel threads with channels:history in practice
    # [OBS-3p: LowyShin/giip-dev-agent #33]. True: allowed; False: not_allowed_token_type [INF: the error].
    bot_reads_channel_threads: bool = True
