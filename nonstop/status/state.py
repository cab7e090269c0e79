"""The supervisor's state: a fixed vocabulary (metrics, readiness), with specifics kept apart as a detail."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """What the supervisor is doing; the specifics (how many links, which error) go in a separate detail."""

    STARTING = "starting"
    CONNECTING = "connecting"
    BACKING_OFF = "backing_off"
    REFUSED = "refused"  # Slack refuses new connections (too_many_websockets) and none is live here
    CONNECTED = "connected"
    DEGRADED = "degraded"
    FATAL = "fatal"
    STOPPING = "stopping"
