"""Logging set-up: human-readable lines or JSON objects on stderr, with every secret redacted.

Redaction happens in the formatter, after the message and any traceback are rendered, so a token
inside an exception text or a URL (Telegram puts the bot token in its URLs) never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping

# Fields the bridge passes with `extra=` that belong in a JSON line.
CONTEXT_FIELDS = ("session_key", "platform", "backend", "event_id", "latency_ms", "cause")
_REDACTED = "[redacted]"


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class TextFormatter(_Redacting):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(secrets, "%(asctime)s %(levelname)-7s %(name)s: %(message)s")


class JsonFormatter(_Redacting):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


def setup_logging(
    level: str = "info",
    fmt: str = "text",
    levels: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    stream=None,
) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries are chatty at INFO (every HTTP request); the operator can turn them up per name.
    for noisy in ("httpx", "httpcore", "telegram", "discord", "slack_bolt", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, value in (levels or {}).items():
        logging.getLogger(name).setLevel(value.upper())
    return handler
