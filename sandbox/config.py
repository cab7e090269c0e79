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
BOT_SCOPES = "app_mentions:read,chat:write,commands"


@dataclass(frozen=True)
class SandboxConfig:
    """Knobs of the sandbox. Defaults mimic production Slack; tests shrink the timers."""

    host: str = "127.0.0.1"
    api_port: int = 0  # 0: chosen by the OS
    ws_port: int = 0
    control_port: int = 0  # separate listener for /_sandbox/ that survives "refused" outages
    ack_deadline_s: float = 3.0
    retry_delays_s: tuple[float, ...] = field(default=(0.0, 60.0, 300.0))
    max_connections: int = 10
    server_ping_interval_s: float = 10.0
    connection_lifetime_s: float = 3600.0
    warning_grace_s: float = 10.0
    refresh_grace_s: float = 1.0
    silent_link_alive_s: float = 30.0
    ticket_ttl_s: float = 60.0
    close_handshake_timeout_s: float = 2.0  # how long a server close frame waits for the client to drop TCP
    seed: int = 0
