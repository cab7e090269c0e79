"""Keep secrets out of every log line and error message.

Slack tokens (`xoxb-`, `xoxp-`, `xapp-`, …) and the one-time `ticket=` of a Socket Mode URL are
replaced wherever they appear: in messages, in their arguments and in exception texts (slack_sdk
puts request details into its exceptions). So are credentials in URLs (`http://user:password@proxy:3128`,
as in HTTPS_PROXY, which slack_sdk logs at DEBUG).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

# LogRecord attributes that are not user-supplied `extra=` fields.
STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

_TOKEN = re.compile(r"\b(xox[a-z]|xapp)-[A-Za-z0-9][A-Za-z0-9-]*")
_TICKET = re.compile(r"(ticket=)[^&\s'\"]+")
# Up to the last "@" before a blank: a password with an unencoded "/" must not leak; rather mask too much.
_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"@]+@")


def redact(text: str) -> str:
    """Return `text` with anything that looks like a Slack token, a socket ticket or URL credentials masked."""
    text = _TOKEN.sub(lambda m: f"{m.group(1)}-…redacted", text)
    text = _URL_CREDENTIALS.sub(r"\1…redacted@", text)
    return _TICKET.sub(r"\1…redacted", text)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the final message, every `extra=` field and any traceback of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key in STANDARD_RECORD_FIELDS or key.startswith("_"):
                continue
            if isinstance(value, str):
                setattr(record, key, redact(value))
            elif not isinstance(value, (int, float, bool, type(None))):
                setattr(record, key, redact(str(value)))  # a formatter would print str(value) anyway
        return True


def redact_url(url: str) -> str:
    """`url` without its password, for log lines and messages (even when the URL is malformed)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    credentials, host = parts.netloc.rsplit("@", 1)
    user, has_password, _ = credentials.partition(":")
    shown = f"{user}:…@" if has_password and user else "…@"
    return urlunsplit((parts.scheme, shown + host, parts.path, parts.query, parts.fragment))
