"""Logging as the host asks: JSON lines when `structured_logging`, readable lines otherwise."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from provider.common.redaction import SecretRedactor

# Attributes every LogRecord has; anything else came from `extra=` and is structured context.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class RedactSecrets(logging.Filter):
    """Every value that came from a secret is redacted: message, context and traceback."""

    def __init__(self, redactor: SecretRedactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self._redactor.redact
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        for key, value in _context(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
            elif not isinstance(value, int | float | bool | None):
                text = str(value)
                if redact(text) != text:  # only a value holding a secret becomes text
                    setattr(record, key, redact(text))
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "target": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context(record))
        if record.exc_info and not record.exc_text:  # a handler without RedactSecrets
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        context = _context(record)
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        if record.exc_info and not record.exc_text:  # a handler without RedactSecrets
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def setup_logging(structured: bool, level: str | None, redactor: SecretRedactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if structured else TextFormatter())
    handler.addFilter(RedactSecrets(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    name = (level or "info").upper()
    root.setLevel(getattr(logging, "WARNING" if name == "WARN" else name, logging.INFO))
    for noisy in ("nats", "asyncio"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
