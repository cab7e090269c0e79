"""OAuth scopes: which scope each modelled method needs, and Slack's answer when it is missing.

Sources (docs/sandbox-model.md): every Web API answer carries the token's scopes in `x-oauth-scopes`
[DOC]; a method called without its scope answers `missing_scope` with `needed` and `provided` [DOC: the
error in each method's table; OBS: apache/superset #15904 shows the body]. The conversation methods need
the scope of the conversation's kind: `*:history` to read messages, `*:read` to list conversations [DOC:
the methods' pages and scopes reference].
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APP_TOKEN_SCOPES",
    "HISTORY_SCOPE_OF",
    "KINDS",
    "METHOD_SCOPES",
    "READ_SCOPE_OF",
    "missing_scope",
    "parse_scopes",
]

# Conversation kinds, as users.conversations' `types` names them.
KINDS = ("public_channel", "private_channel", "mpim", "im")
HISTORY_SCOPE_OF = {
    "public_channel": "channels:history",
    "private_channel": "groups:history",
    "mpim": "mpim:history",
    "im": "im:history",
}
READ_SCOPE_OF = {
    "public_channel": "channels:read",
    "private_channel": "groups:read",
    "mpim": "mpim:read",
    "im": "im:read",
}
# Methods whose scope does not depend on the conversation [DOC: each method's "Scopes" facts]. Methods
# not listed need none (auth.test, views.publish) or are not modelled beyond answering ok.
METHOD_SCOPES = {
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.update": "chat:write",
    "reactions.add": "reactions:write",
}
APP_TOKEN_SCOPES = ("connections:write",)  # an app-level token for Socket Mode [DOC]


def parse_scopes(scopes: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated string or a list of scope names → a tuple without blanks or repeats."""
    names = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    if not all(isinstance(n, str) for n in names):
        raise TypeError("scopes must be a comma-separated string or a list of strings")
    return tuple(dict.fromkeys(n.strip() for n in names if n.strip()))


def missing_scope(needed: list[str] | tuple[str, ...], provided: tuple[str, ...]) -> dict[str, Any]:
    return {"ok": False, "error": "missing_scope", "needed": ",".join(needed), "provided": ",".join(provided)}
