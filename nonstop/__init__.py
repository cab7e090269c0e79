"""Nonstop's supervisor runtime: keep a Bolt app's Socket Mode link alive, forever."""

from nonstop.handler import SupervisedSocketModeHandler

__all__ = ["SupervisedSocketModeHandler"]
