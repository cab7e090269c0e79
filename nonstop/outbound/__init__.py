"""The way out: every Web API call through one governor (Slack's limits, order, retries, lookups).

`Governor` (pure) decides; `Outbound` (threads) and `AsyncOutbound` (asyncio) carry its decisions out;
`GovernedWebClient` and `AnswerThroughGovernor` put a Bolt app's calls on that path. See
docs/answer-path.md for the decisions and their numbers.
"""

from nonstop.outbound.answering import Answering
from nonstop.outbound.client import AnswerThroughGovernor, GovernedWebClient
from nonstop.outbound.governor import Call, Due, Governor
from nonstop.outbound.limits import Limit, limit_for
from nonstop.outbound.pending import NotDelivered, PendingResponse, slack_trouble
from nonstop.outbound.scopes import Scopes
from nonstop.outbound.sync import Outbound

__all__ = [
    "AnswerThroughGovernor",
    "Answering",
    "Call",
    "Due",
    "GovernedWebClient",
    "Governor",
    "Limit",
    "NotDelivered",
    "Outbound",
    "PendingResponse",
    "Scopes",
    "limit_for",
    "slack_trouble",
]
