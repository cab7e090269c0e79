"""A local Slack (Web API + Socket Mode) with fault injection, for offline tests and demos."""

from sandbox.config import SandboxConfig
from sandbox.records import Ack, ApiCall, Attempt, ConnectionInfo, Delivery, DeliveryRecord
from sandbox.server import Sandbox

__all__ = ["Ack", "ApiCall", "Attempt", "ConnectionInfo", "Delivery", "DeliveryRecord", "Sandbox", "SandboxConfig"]
