"""A fake Discord: the REST API (under /api/v10) and the gateway websocket on one 127.0.0.1 server.

The real discord.py client logs in (users/@me, oauth2/applications/@me), discovers the gateway
(gateway/bot), IDENTIFYs and gets READY plus one GUILD_CREATE (a guild with a text channel, a thread
and the bot's managed role), heartbeats, RESUMEs. Tests make people talk with `say()`, which
dispatches MESSAGE_CREATE; what the bot posts is in `posted`, and like Discord the fake echoes the
bot's own messages back over the gateway. REST serves any message it knows (GET
channels/{c}/messages/{id}), and attachments (`say(attachment=…, data=…)`) are served from the
fake's own "CDN" (`/attachments/…`), each download recorded in `downloads`. Faults: every REST fault of FakeServer, `rate_limit_next`
(a 429 as Discord sends it), `forbid_next` (403 Missing Permissions), `disconnect()` (the gateway
closes the socket) and `invalidate_next_resume()` (the client must IDENTIFY again).

Edits (PATCH a message) are recorded in `edits` and change the message in `posted`; like Discord
they share a rate-limit bucket per channel (`edit_limit` per `edit_window` seconds) described by
the X-RateLimit-* headers, and an edit beyond it gets a 429 with `retry_after`.
Like Discord, a message created with a `nonce` and `enforce_nonce: true` whose nonce the bot used
within `nonce_window` seconds is not created again: the first one is returned (`nonce_hits` counts
these). A RESUME replays every event dispatched after the client's last sequence number, and
the last `replay_seen` events before it as well (a redelivery of events the client already had);
`redeliver(data)` dispatches a message the client has seen once more.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

from aiohttp import web

from .base import FakeServer, Fault
from .discord_ws import MESSAGE_CONTENT, Gateway, _Connection, _Session

__all__ = ["ALICE", "API", "BOB", "BOT_ID", "HELPER_BOT", "MESSAGE_CONTENT", "TOKEN", "FakeDiscord"]

API = "/api/v10"
TOKEN = "fake-discord-token.Zm9vYmFy.c2VjcmV0"
BOT_ID = 900000000000000001
ALICE = 100000000000000001
BOB = 100000000000000002
HELPER_BOT = 100000000000000003
_DISCORD_EPOCH_MS = 1420070400000
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def _user(uid: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(uid),
        "username": name,
        "global_name": name.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
    }


def _member(roles: list[int]) -> dict[str, Any]:
    return {
        "roles": [str(r) for r in roles],
        "joined_at": _now(),
        "deaf": False,
        "mute": False,
        "flags": 0,
    }


class FakeDiscord(Gateway, FakeServer):
    def __init__(
        self, *, token: str = TOKEN, message_content_allowed: bool = True, record: bool = True
    ) -> None:
        self.token = token
        self.message_content_allowed = message_content_allowed
        self._ids = itertools.count(1)
        self.bot = _user(BOT_ID, "botbridge", bot=True)
        self.users = {
            BOT_ID: self.bot,
            ALICE: _user(ALICE, "alice"),
            BOB: _user(BOB, "bob"),
            HELPER_BOT: _user(HELPER_BOT, "helperbot", bot=True),
        }
        self.guild_id = self.snowflake()
        self.channel_id = self.snowflake()
        self.thread_id = self.snowflake()
        self.bot_role_id = self.snowflake()
        self.other_role_id = self.snowflake()
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.messages: dict[str, dict[str, Any]] = {}
        self.posted: list[dict[str, Any]] = []  # what the bot posted, in order
        self.attachments: dict[str, bytes] = {}  # CDN path -> bytes
        self.downloads: list[str] = []  # CDN paths fetched, in order
        self.gateway_ops: list[dict[str, Any]] = []  # what clients sent (tokens removed)
        self.sessions: dict[str, _Session] = {}
        self.connections: list[_Connection] = []
        self.heartbeat_interval_ms = 41250
        self._invalidate_resumes = 0
        self.gateway_refused = False  # True: new gateway connections get HTTP 503
        self.advertised_gateway: str | None = None  # what gateway/bot names; None: this server
        self.edits: list[dict[str, Any]] = []  # every edit of a bot message: id, content, at
        self.posted_at: dict[str, float] = {}  # bot message id -> loop time it was created
        self.edits_refused = 0  # edits answered 429 because the bucket was empty
        self.edit_limit = 5
        self.edit_window = 5.0
        self._edit_times: dict[int, list[float]] = {}  # channel -> recent edit times
        self.replay_seen = 0  # events at or before the client's sequence a RESUME sends again
        self.nonce_window = 300.0  # "the past few minutes"
        self.nonces: dict[str, tuple[dict[str, Any], float]] = {}
        self.nonce_hits = 0  # creates answered with the message already made for that nonce
        super().__init__(record=record)
        self.app.on_response_prepare.append(self._like_discord)

    # ---------------------------------------------------------------------------- addresses

    @property
    def api_base_url(self) -> str:
        return f"{self.url}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def snowflake(self) -> int:
        return ((int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22) + next(self._ids)

    def dm_channel(self, user_id: int) -> int:
        return self.dm_channels.setdefault(user_id, self.snowflake())

    # ---------------------------------------------------------------------------- faults

    def rate_limit_next(self, retry_after: float, *, path: str | None = None) -> Fault:
        """A 429 the way Discord sends it: JSON `retry_after`, the header, and a Via header."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after}
        body["global"] = False
        return self.fail_next(429, path=path, retry_after=retry_after, body=body)

    def forbid_next(self, channel_id: int, *, times: int = 1) -> Fault:
        body = {"message": "Missing Permissions", "code": 50013}
        path = f"{API}/channels/{channel_id}/messages"
        return self.fail_next(403, path=path, times=times, body=body)

    async def disconnect(self, code: int = 4000) -> None:
        """Close every gateway socket from the server side, as Discord does during a restart."""
        for connection in list(self.connections):
            await connection.ws.close(code=code, message=b"fake gateway restart")

    def invalidate_next_resume(self) -> None:
        self._invalidate_resumes += 1

    async def _like_discord(self, request: web.Request, response: web.StreamResponse) -> None:
        # discord.py treats a 429 without Via as a Cloudflare ban, and parses JSON only when the
        # content type is exactly application/json: Discord's responses are like that.
        response.headers["Via"] = "1.1 google"
        if response.headers.get("Content-Type", "").startswith("application/json"):
            response.headers["Content-Type"] = "application/json"

    # ---------------------------------------------------------------------------- people talk

    async def say(
        self,
        content: str,
        *,
        author: int = ALICE,
        channel: int | None = None,
        dm: bool = False,
        reply_to: dict[str, Any] | None = None,
        resolved: bool = True,
        seen: bool = True,
        webhook: bool = False,
        attachment: str | None = None,
        data: bytes = b"\0" * 1024,
        content_type: str | None = None,
        stated_size: int | None = None,
    ) -> dict[str, Any]:
        """A user posts `content` (in the guild text channel unless `channel` or `dm`), with a
        file named `attachment` (holding `data`) if given. `resolved=False` leaves out the
        replied-to message, as Discord sometimes does: the client must fetch it. `seen=False`
        keeps the message from the gateway (posted before the bot connected): REST has it."""
        channel_id = self.dm_channel(author) if dm else (channel or self.channel_id)
        message = self._message(
            channel_id, None if dm else self.guild_id, author, content, reply_to
        )
        if reply_to is not None and not resolved:
            del message["referenced_message"]
        if attachment:
            path = f"/attachments/{self.snowflake()}/{attachment}"
            self.attachments[path] = data
            message["attachments"] = [{
                "id": str(self.snowflake()), "filename": attachment,
                "size": len(data) if stated_size is None else stated_size,
                "url": f"{self.url}{path}?ex=signed", "proxy_url": f"{self.url}{path}",
                **({"content_type": content_type} if content_type else {}),
            }]  # fmt: skip
        if webhook:
            message["webhook_id"] = str(self.snowflake())
            message.pop("member", None)
        if seen:
            await self._dispatch_for(message.get("guild_id"), "MESSAGE_CREATE", message)
        return message

    def _message(
        self,
        channel_id: int,
        guild_id: int | None,
        author: int,
        content: str,
        reply_to: dict[str, Any] | None,
    ) -> dict[str, Any]:
        mentioned = [int(m) for m in _USER_MENTION.findall(content) if int(m) in self.users]
        if reply_to is not None:
            mentioned.append(int(reply_to["author"]["id"]))  # a reply pings its author
        mentions = []
        for uid in dict.fromkeys(mentioned):
            user = dict(self.users[uid])
            if guild_id is not None:
                user["member"] = _member([self.bot_role_id] if uid == BOT_ID else [])
            mentions.append(user)
        data: dict[str, Any] = {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "author": self.users[author],
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": "@everyone" in content or "@here" in content,
            "mentions": mentions,
            "mention_roles": _ROLE_MENTION.findall(content),
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
            data["member"] = _member([self.bot_role_id] if author == BOT_ID else [])
        if reply_to is not None:
            data["type"] = 19
            data["message_reference"] = {
                "type": 0,
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                **({"guild_id": str(guild_id)} if guild_id else {}),
            }
            data["referenced_message"] = reply_to
        self.messages[data["id"]] = data
        return data

    # ---------------------------------------------------------------------------- REST

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get(f"{API}/users/@me", self._me)
        app.router.add_get(f"{API}/oauth2/applications/@me", self._application)
        app.router.add_get(f"{API}/gateway/bot", self._gateway_bot)
        app.router.add_post(f"{API}/channels/{{channel}}/messages", self._create_message)
        app.router.add_post(f"{API}/channels/{{channel}}/typing", self._typing)
        app.router.add_get(f"{API}/channels/{{channel}}/messages/{{message}}", self._get_message)
        app.router.add_get("/attachments/{id}/{name}", self._cdn)
        app.router.add_patch(f"{API}/channels/{{channel}}/messages/{{message}}", self._edit_message)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return web.json_response({**self.bot, "verified": True, "flags": 0, "mfa_enabled": False})

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return web.json_response(
            {
                "id": str(BOT_ID),
                "name": "botbridge",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.users[ALICE],
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return web.json_response(
            {
                "url": self.advertised_gateway or self.gateway_url,
                "shards": 1,
                "session_start_limit": limit,
            }
        )

    def _known_channel(self, channel_id: int) -> bool:
        return channel_id in (self.channel_id, self.thread_id, *self.dm_channels.values())

    async def _create_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        channel_id = int(request.match_info["channel"])
        if not self._known_channel(channel_id):
            return web.json_response({"message": "Unknown Channel", "code": 10003}, status=404)
        body = await request.json()
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            known = self.nonces.get(str(nonce))
            if known is not None and time.monotonic() - known[1] <= self.nonce_window:
                self.nonce_hits += 1
                return web.json_response(known[0])
        guild_id = None if channel_id in self.dm_channels.values() else self.guild_id
        ref = body.get("message_reference")
        reply_to = self.messages.get(str(ref["message_id"])) if ref else None
        data = self._message(channel_id, guild_id, BOT_ID, body.get("content", ""), reply_to)
        if reply_to is not None and not body.get("allowed_mentions", {}).get("replied_user"):
            data["mentions"] = [m for m in data["mentions"] if m["id"] != reply_to["author"]["id"]]
        data["allowed_mentions"] = body.get("allowed_mentions")  # kept for tests to inspect
        if nonce is not None:
            data["nonce"] = nonce
            self.nonces[str(nonce)] = (data, time.monotonic())
        self.posted.append(data)
        self.posted_at[data["id"]] = asyncio.get_running_loop().time()
        await self._dispatch_for(guild_id, "MESSAGE_CREATE", data)  # the bot sees its own post
        return web.json_response(data)

    async def _get_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        found = self.messages.get(request.match_info["message"])
        if found is None or found["channel_id"] != request.match_info["channel"]:
            return web.json_response({"message": "Unknown Message", "code": 10008}, status=404)
        return web.json_response(found)

    async def _cdn(self, request: web.Request) -> web.Response:
        found = self.attachments.get(request.path)
        if found is None:
            return web.Response(status=404, text="Not Found")
        self.downloads.append(request.path)
        return web.Response(body=found, content_type="application/octet-stream")

    async def _edit_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        channel_id = int(request.match_info["channel"])
        now = asyncio.get_running_loop().time()
        recent = [t for t in self._edit_times.get(channel_id, []) if t > now - self.edit_window]
        reset_after = (recent[0] + self.edit_window - now) if recent else self.edit_window
        headers = {
            "X-RateLimit-Limit": str(self.edit_limit),
            "X-RateLimit-Bucket": "edit-bucket",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if len(recent) >= self.edit_limit:
            self.edits_refused += 1
            headers["X-RateLimit-Remaining"] = "0"
            headers["Retry-After"] = f"{reset_after:.3f}"
            body = {"message": "You are being rate limited.", "retry_after": reset_after}
            return web.json_response({**body, "global": False}, status=429, headers=headers)
        message = self.messages.get(request.match_info["message"])
        if message is None or int(message["channel_id"]) != channel_id:
            return web.json_response({"message": "Unknown Message", "code": 10008}, status=404)
        recent.append(now)
        self._edit_times[channel_id] = recent
        headers["X-RateLimit-Remaining"] = str(self.edit_limit - len(recent))
        body = await request.json()
        if "content" in body:
            message["content"] = body["content"]
        message["edited_timestamp"] = _now()
        self.edits.append({"id": message["id"], "content": message["content"], "at": now})
        return web.json_response(message, headers=headers)

    async def _typing(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return web.Response(status=204)

    def posted_in(self, channel_id: int) -> list[str]:
        return [m["content"] for m in self.posted if int(m["channel_id"]) == channel_id]

    def typing_calls(self, channel_id: int) -> int:
        return len(self.calls_to(f"{API}/channels/{channel_id}/typing", "POST"))

    def _guild(self) -> dict[str, Any]:
        gid = str(self.guild_id)

        def role(rid: int, name: str, position: int, **extra: Any) -> dict[str, Any]:
            return {
                "id": str(rid),
                "name": name,
                "permissions": "0",
                "position": position,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": True,
                "flags": 0,
                **extra,
            }

        return {
            "id": gid,
            "name": "Test Guild",
            "unavailable": False,
            "member_count": 3,
            "large": False,
            "owner_id": str(ALICE),
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [
                role(self.guild_id, "@everyone", 0, permissions="68608"),
                role(self.bot_role_id, "botbridge", 1, managed=True, tags={"bot_id": str(BOT_ID)}),
                role(self.other_role_id, "humans", 2),
            ],
            "channels": [
                {
                    "id": str(self.channel_id),
                    "type": 0,
                    "guild_id": gid,
                    "name": "general",
                    "position": 0,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                    "topic": None,
                }
            ],
            "threads": [
                {
                    "id": str(self.thread_id),
                    "type": 11,
                    "guild_id": gid,
                    "parent_id": str(self.channel_id),
                    "owner_id": str(ALICE),
                    "name": "a question",
                    "message_count": 0,
                    "member_count": 1,
                    "thread_metadata": {
                        "archived": False,
                        "auto_archive_duration": 1440,
                        "archive_timestamp": _now(),
                        "locked": False,
                    },
                }
            ],
            "members": [{**_member([self.bot_role_id]), "user": self.bot}],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }
