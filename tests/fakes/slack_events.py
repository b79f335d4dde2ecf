"""What Slack sends the bot, as the fake Slack and the tests build it: event callbacks (a DM, a
channel message, an app mention), and HTTP Events posted with Slack's v0 signature.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

import httpx

BOT_TOKEN = "xoxb-test-bot-token-0123456789"
APP_TOKEN = "xapp-test-app-token-0123456789"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
TEAM_ID = "T024"
BOT_USER_ID = "UBOT"

ids = itertools.count(1)


def event_callback(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """The Events API envelope Slack POSTs (and wraps in a Socket Mode envelope)."""
    return {
        "token": "legacy-verification-token",
        "team_id": event.get("team", TEAM_ID),
        "api_app_id": "A0APP",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True, "enterprise_id": None}
        ],
    }


def new_ts() -> str:
    return f"{int(time.time())}.{next(ids):06d}"


def _message(channel_type: str, text: str, user: str, channel: str, extra: dict) -> dict[str, Any]:
    event = {"type": "message", "channel_type": channel_type, "user": user, "text": text}
    event.update({"channel": channel, "ts": new_ts(), "team": TEAM_ID, **extra})
    return event_callback(event)


def im(text: str, *, user: str = "U012", channel: str = "D0IM", **extra: Any) -> dict[str, Any]:
    return _message("im", text, user, channel, extra)


def channel_message(
    text: str, *, user: str = "U012", channel: str = "C123", **extra: Any
) -> dict[str, Any]:
    return _message("channel", text, user, channel, extra)


def mention(
    text: str, *, user: str = "U012", channel: str = "C123", **extra: Any
) -> dict[str, Any]:
    """An app_mention; `text` should hold `<@UBOT>` as Slack sends it."""
    event = {"type": "app_mention", "user": user, "text": text, "channel": channel}
    event.update({"ts": new_ts(), "team": TEAM_ID, **extra})
    event.setdefault("event_ts", event["ts"])
    return event_callback(event)


# ---------------------------------------------------------------------------------- HTTP side


def signature(secret: str, timestamp: int, body: str) -> str:
    """Slack's v0 request signature: HMAC-SHA256 over `v0:{timestamp}:{body}`."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackEvents:
    """Slack's side of HTTP Events: signs each payload and POSTs it to the bridge."""

    def __init__(self, url: str, secret: str = SIGNING_SECRET) -> None:
        self.url = url
        self.secret = secret

    async def post(
        self,
        payload: dict[str, Any],
        *,
        retry_num: int | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        body = json.dumps(payload)
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(stamp)}
        if signed:
            headers["X-Slack-Signature"] = signature(secret or self.secret, stamp, body)
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        async with httpx.AsyncClient(timeout=5.0) as client:
            return await client.post(self.url, content=body, headers=headers)
