"""Session keys: the one place where a message becomes `wx:dm:{sender}` or
`wx:group:{group}:user:{sender}`.

Qualified ids (the default) prefix the platform and, where there is one, the workspace, joined by
`.`: `tg.42`, `sl.T024BE7LD.U012AB3CD`. Each component is escaped so that it never holds `.`, `:`,
`#` or `%` itself; distinct (platform, workspace, group, user) tuples therefore never share a key
and a key parses one way only. `#` is kept for the generation suffix `/reset` adds (`key#2`,
`types.Session.wire_id`): no key can end like another key after a reset. `raw` keys use the
platform ids as they are (single-platform operators), `%`, `:` and `#` escaped alike.
"""

from __future__ import annotations

from typing import Literal

from .types import ChatKind, Inbound

KeyMode = Literal["qualified", "raw"]

# Short platform prefixes keep keys readable; an unknown platform uses its own (escaped) name.
PLATFORM_PREFIX = {"telegram": "tg", "discord": "dc", "slack": "sl", "console": "cl"}
_RESERVED_PREFIXES = set(PLATFORM_PREFIX.values())

_ESCAPES = str.maketrans({"%": "%25", ".": "%2E", ":": "%3A", "#": "%23"})
_RAW_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "#": "%23"})


def _escape(component: str) -> str:
    return component.translate(_ESCAPES)


def _platform(platform: str) -> str:
    if platform in PLATFORM_PREFIX:
        return PLATFORM_PREFIX[platform]
    escaped = _escape(platform)
    # A platform literally named "tg" must not collide with telegram's prefix.
    return f"{escaped}%" if escaped in _RESERVED_PREFIXES else escaped


def qualify(platform: str, workspace: str | None, local_id: str) -> str:
    """`tg.42`, `sl.T024.U012`: an id that no other platform or workspace can produce."""
    parts = [_platform(platform)]
    if workspace is not None:
        # Escaped components hold no ".", so a key with a workspace has one more dot than one
        # without and the two can never be confused.
        parts.append(_escape(workspace))
    parts.append(_escape(local_id))
    return ".".join(parts)


def session_key(
    platform: str,
    kind: ChatKind,
    sender: str,
    group: str | None = None,
    workspace: str | None = None,
    mode: KeyMode = "qualified",
) -> str:
    if mode == "raw":
        user = sender.translate(_RAW_ESCAPES)
        room = (group or "").translate(_RAW_ESCAPES)
    else:
        user = qualify(platform, workspace, sender)
        room = qualify(platform, workspace, group or "")
    if kind is ChatKind.DM:
        return f"wx:dm:{user}"
    if group is None:
        raise ValueError("a group session needs a group id")
    return f"wx:group:{room}:user:{user}"


def key_for(inbound: Inbound, mode: KeyMode = "qualified") -> str:
    group = inbound.group_id if inbound.kind is ChatKind.GROUP else None
    return session_key(
        inbound.platform, inbound.kind, inbound.sender_id, group, inbound.workspace, mode
    )


def owner_of(session_key: str) -> str:
    """The user part of a key (`tg.42` of `wx:group:tg.-100:user:tg.42`): whose session it is.
    Escaped components hold no `:`, so it is whatever follows the last one."""
    return session_key.rsplit(":", 1)[-1]


def owner_tag(platform: str, workspace: str | None, user: str, mode: KeyMode = "qualified") -> str:
    """What `owner_of` returns for this sender's sessions."""
    return owner_of(session_key(platform, ChatKind.DM, user, workspace=workspace, mode=mode))
