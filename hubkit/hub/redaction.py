"""Keep access tokens out of log records and error messages.

``protect(token)`` installs, once, a log-record factory that masks known secrets, ``Bearer`` and
``Authorization`` values and local-Hub upload tickets in every record; ``redact(text)`` does it to a string.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "***"
_MIN_SECRET = 4  # shorter strings would mask ordinary words
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",;)\]]+"),
    re.compile(r"(?i)(authorization'?\"?\s*[:,=]\s*(?:b?['\"])?)(?!bearer\s)(?!b['\"])[^\s'\",;)\]]+"),
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    re.compile(r"([?&]ticket=)[^&\s'\"]+"),  # the local Hub's one-time LFS upload URLs
)

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def protect(*tokens: str | bool | None) -> None:
    """Treat each string in ``tokens`` as a secret from now on, and wrap the process's log-record factory
    (once) so that every record is redacted when made."""
    global _installed
    with _lock:
        _secrets.update(t for t in tokens if isinstance(t, str) and len(t) >= _MIN_SECRET)
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error report
            return record
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


def redact(text: str) -> str:
    """``text`` with every protected secret and credential-looking value replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text
