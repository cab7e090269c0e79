"""The supervisor's state: a fixed vocabulary (metrics, readiness), with specifics kept apart as a detail."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """What the supervisor is doing; the specifics (how many links, which error) go in a separate detail."""

    STARTING = "starting"
    CONNECTING = "connecting"
    BACKING_OFF = "backing_off"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    FATAL = "fatal"
    STOPPING = "stopping"
