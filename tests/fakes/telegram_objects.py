"""The Bot API's objects as the fake Telegram builds and reads them: users, chats, the entities
Telegram adds to a text, its error bodies, and the parameters of a request as PTB sends them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .base import Call

# Parameters python-telegram-bot sends as plain strings; every other value is JSON encoded.
_STRING_PARAMS = {"text", "parse_mode", "url", "secret_token", "action", "caption", "ip_address"}
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{3,32}")
_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _utf16_offset(text: str, index: int) -> int:
    return utf16_len(text[:index])


def auto_entities(text: str) -> list[dict[str, Any]]:
    """The `mention` and `bot_command` entities Telegram's server adds to a message."""
    found = [("mention", m) for m in _MENTION.finditer(text)]
    found += [("bot_command", m) for m in _COMMAND.finditer(text)]
    found.sort(key=lambda item: item[1].start())
    return [
        {
            "type": kind,
            "offset": _utf16_offset(text, m.start()),
            "length": utf16_len(m.group()),
        }
        for kind, m in found
    ]


def user(
    user_id: int, first_name: str = "User", *, username: str | None = None, is_bot: bool = False
) -> dict[str, Any]:
    found = {"id": user_id, "is_bot": is_bot, "first_name": first_name}
    if username:
        found["username"] = username
    return found


def group(chat_id: int, title: str = "Group", *, forum: bool = False) -> dict[str, Any]:
    chat = {
        "id": chat_id,
        "type": "supergroup" if str(chat_id).startswith("-100") else "group",
        "title": title,
    }
    if forum:
        chat["is_forum"] = True
    return chat


class ApiError(Exception):
    def __init__(self, code: int, description: str, **parameters: Any) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]


def _decode(params: dict[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, value in params.items():
        if key in _STRING_PARAMS:
            decoded[key] = value
            continue
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value  # "@channelname" chat ids
    return decoded


def params_of(call: Call) -> dict[str, Any]:
    found = dict(call.query)
    kind = call.headers.get("Content-Type", "")
    if call.body and kind.startswith("application/json"):
        return {**found, **(call.json or {})}
    if call.body and kind.startswith("application/x-www-form-urlencoded"):
        found.update(call.form)
    return _decode(found)
