"""The fake Discord's gateway websocket: HELLO, IDENTIFY → READY (+ GUILD_CREATE on the guild's
shard), heartbeats, RESUME replaying what the client missed, and dispatching events to a session.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

MESSAGE_CONTENT = 1 << 15


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    deflate: Any = None  # a zlib compressobj when the client asked for zlib-stream
    session: _Session | None = None

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        if self.deflate is None:
            await self.ws.send_str(data.decode())
        else:
            # zlib-stream: one compression context per connection, each frame ends in a sync flush.
            await self.ws.send_bytes(
                self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
            )


@dataclass
class _Session:
    id: str
    shard: tuple[int, int]
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # kept for RESUME replays
    connection: _Connection | None = None


class Gateway:
    """The gateway half of `FakeDiscord` (which holds the state it reads: token, sessions,
    connections, the guild and the ops clients sent)."""

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_refused:
            return web.Response(status=503, text="gateway unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        deflate = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None
        connection = _Connection(ws, deflate)
        self.connections.append(connection)
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms}
            await connection.send({"op": 10, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_op(connection, json.loads(msg.data))
        finally:
            self.connections.remove(connection)
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
        return ws

    async def _on_op(self, connection: _Connection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        recorded = dict(payload)
        if isinstance(data, dict) and "token" in data:
            recorded["d"] = {k: v for k, v in data.items() if k != "token"}
            recorded["token_ok"] = data["token"] == self.token
        self.gateway_ops.append(recorded)
        self._changed.set()
        if op == 1:
            await connection.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(connection, data)
        elif op == 6:
            await self._resume(connection, data)

    async def _identify(self, connection: _Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await connection.ws.close(code=4004, message=b"Authentication failed.")
            return
        if data.get("intents", 0) & MESSAGE_CONTENT and not self.message_content_allowed:
            await connection.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard_id, shard_count = data.get("shard") or (0, 1)
        session = _Session(f"session-{self.snowflake()}", (shard_id, shard_count))
        self.sessions[session.id] = session
        self._attach(connection, session)
        on_shard = (self.guild_id >> 22) % shard_count == shard_id
        ready = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": str(self.guild_id), "unavailable": True}] if on_shard else [],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.bot["id"], "flags": 0},
            "shard": [shard_id, shard_count],
            "private_channels": [],
            "relationships": [],
        }
        await self._dispatch(session, "READY", ready)
        if on_shard:
            await self._dispatch(session, "GUILD_CREATE", self._guild())

    async def _resume(self, connection: _Connection, data: dict[str, Any]) -> None:
        session = self.sessions.get(data.get("session_id", ""))
        if session is None or data.get("token") != self.token or self._invalidate_resumes:
            self._invalidate_resumes = max(0, self._invalidate_resumes - 1)
            await connection.send({"op": 9, "d": False, "s": None, "t": None})
            return
        self._attach(connection, session)
        seen = data.get("seq") or 0
        if self.replay_seen:  # a fault: events the client had already, delivered again
            for event in [e for e in session.events if e["s"] <= seen][-self.replay_seen :]:
                await connection.send(event)
        # Like Discord, replay what was dispatched while the client was away.
        for event in session.events:
            if event["s"] > seen:
                await connection.send(event)
        await self._dispatch(session, "RESUMED", {})

    @staticmethod
    def _attach(connection: _Connection, session: _Session) -> None:
        connection.session = session
        session.connection = connection

    async def _dispatch(self, session: _Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.events.append(payload)
        if session.connection is not None and not session.connection.ws.closed:
            await session.connection.send(payload)

    async def _dispatch_for(self, guild_id: Any, event: str, data: dict[str, Any]) -> None:
        """Send to the newest session of the shard that owns the guild (shard 0 for DMs)."""
        gid = int(guild_id) if guild_id else 0
        sessions = [s for s in self.sessions.values() if (gid >> 22) % s.shard[1] == s.shard[0]]
        if not sessions:
            raise AssertionError("no gateway session: is the bot connected?")
        await self._dispatch(sessions[-1], event, data)

    async def redeliver(self, data: dict[str, Any]) -> None:
        """Dispatch a message the client has already been sent, once more."""
        await self._dispatch_for(data.get("guild_id"), "MESSAGE_CREATE", data)

    async def wait_identified(self, count: int = 1, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while sum(1 for op in self.gateway_ops if op["op"] == 2) < count:
                self._changed.clear()
                await self._changed.wait()
