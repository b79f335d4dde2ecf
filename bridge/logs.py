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
from typing import TextIO
from urllib.parse import quote

# Fields the bridge passes with `extra=` that belong in a JSON line (and, briefly, a text line).
CONTEXT_FIELDS = ("session_key", "platform", "backend", "event_id", "latency_ms", "cause")
_REDACTED = "[redacted]"
# Libraries that log every HTTP request at INFO, or payloads holding what users wrote at DEBUG
# (telegram, discord, slack_sdk: each request or gateway event). Set to WARNING so their records
# are not even made; the operator turns one up by naming it in `log_levels`.
NOISY_LOGGERS = (
    "httpx", "httpcore", "telegram", "discord", "slack_bolt", "slack_sdk", "aiohttp",
    "redis", "websockets", "asyncio", "hpack", "telegramify_markdown",
)  # fmt: skip
# The bridge's own loggers: everything else is a library.
OWN_LOGGERS = ("bridge", "adapters", "py.warnings")


def brief(exc: BaseException) -> str:
    """An exception for a log line: its type and text, short. Not `repr`: a UnicodeError's repr
    holds the whole string it failed on (a request body, a user's message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class Redactor:
    """Replaces every secret, as written and as it appears percent-encoded in a URL."""

    def __init__(self, secrets: Iterable[str]) -> None:
        variants = set()
        for secret in secrets:
            if secret:
                variants.update({secret, quote(secret, safe=""), quote(secret, safe="/:")})
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(variants, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.redact = Redactor(secrets)

    def formatException(self, ei) -> str:
        return self.redact(super().formatException(ei))


class TextFormatter(_Redacting):
    """`2026-01-02 10:00:00,123 INFO    bridge.router: answered [platform=telegram …]`"""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(secrets, "%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{name}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        )
        if context:
            # After the message line, before a traceback, so the first line stays greppable.
            head, sep, tail = text.partition("\n")
            text = f"{head} [{context}]{sep}{tail}"
        return self.redact(text)


class JsonFormatter(_Redacting):
    """One JSON object per line: time, level, logger, message, the context fields, exception."""

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
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # Redact each value before encoding: JSON escaping could otherwise hide a secret.
        for name, value in entry.items():
            if isinstance(value, str):
                entry[name] = self.redact(value)
        return json.dumps(entry, ensure_ascii=False, default=lambda v: self.redact(str(v)))


class LibraryFilter(logging.Filter):
    """Below WARNING, only the bridge's own records pass, and a library's only when the operator
    named it (or a parent) in `log_levels`: `log_level: debug` alone must not let a library we
    never heard of print the statements or payloads it handles (they hold users' text)."""

    def __init__(self, named: Iterable[str]) -> None:
        super().__init__()
        self._allowed = (*OWN_LOGGERS, *named)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        name = record.name
        return any(name == allowed or name.startswith(allowed + ".") for allowed in self._allowed)


def setup_logging(
    level: str = "info",
    fmt: str = "text",
    levels: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record to one stderr handler; `levels` sets a level per logger name
    (`bridge.router: debug`, `telegram: info`), overriding the quiet default of noisy libraries."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    handler.addFilter(LibraryFilter(levels or {}))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, value in (levels or {}).items():
        logging.getLogger(name).setLevel(value.upper())
    # Python warnings (deprecations from libraries) go through the same redacting handler.
    logging.captureWarnings(True)
    return handler
