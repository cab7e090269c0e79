"""What the process knows about its own health: the telemetry record, its snapshots, /healthz and /metrics."""

from nonstop.status.snapshot import ClusterView, Drop, Replica, Snapshot
from nonstop.status.state import State
from nonstop.status.telemetry import TELEMETRY, Telemetry

__all__ = ["TELEMETRY", "ClusterView", "Drop", "Replica", "Snapshot", "State", "Telemetry"]
