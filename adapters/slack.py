"""Slack through slack-bolt's AsyncApp: DMs and app mentions in, thread replies in mrkdwn out.

Socket Mode (an app token; no public URL) or HTTP Events on the bridge's HTTP server (a signing
secret; bolt checks signatures and timestamps). Each event is handed to the router before bolt
acknowledges it, so an acknowledged event is durably accepted, and Slack's retries of it are
acknowledged again and dropped by the router as duplicates. Replies go out one part at a time
through `_slack_send`, which makes a resent part appear once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.adapter import Deliver, Health, HttpRoute
from bridge.config import SlackAdapter as SlackConfig
from bridge.errors import DeliveryFailed, PictureUnavailable
from bridge.logs import brief
from bridge.metrics import Metrics
from bridge.types import Addressed, ChatKind, Inbound, Limits, Outbound, Picture

from . import _slack_send
from ._slack_client import SlackStartError, auth_test, call, open_socket, web_client
from ._slack_context import ThreadParents, download
from ._slack_events import PLATFORM, to_inbound
from ._slack_live import SlackLive

log = logging.getLogger("adapters.slack")

# Errors that mean the reaction is already in the state we want.
_REACTION_SETTLED = ("already_reacted", "no_reaction")


class SlackAdapter:
    platform = PLATFORM
    # 3,000 fits one section block; mrkdwn escaping grows a part at most fivefold (& → &amp;),
    # still far below the 40,000 characters at which Slack truncates a message's `text`.
    limits = Limits(max_len=3000)
    # A part that may have been posted is looked up by its metadata before it is posted again.
    dedup_window = math.inf

    def __init__(self, config: SlackConfig, metrics: Metrics) -> None:
        self._cfg = config
        self._metrics = metrics
        self._deliver: Deliver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._app: AsyncApp | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._identity: dict[str, Any] = {}
        self._parents: ThreadParents | None = None
        self._streams_refused = False  # chat.startStream is not available to this app
        self._status_refused = False  # assistant.threads.setStatus is not either
        self._send_only = False

    # ------------------------------------------------------------------------------ lifecycle

    def routes(self) -> Sequence[HttpRoute]:
        if self._cfg.mode != "http":
            return ()
        return (HttpRoute("POST", self._cfg.events_path, self._on_http),)

    async def start(self, deliver: Deliver | None) -> None:
        self._deliver = deliver
        self._session = aiohttp.ClientSession()
        self._client = web_client(self._cfg, self._metrics, self._session)
        try:
            self._identity = await auth_test(self._client)
            self._parents = ThreadParents(self._client, self._identity)
            if deliver is None:  # a worker: the Web API only, no socket, no events
                self._send_only = True
                log.info("slack: bot %s, sending only", self._identity.get("user"))
                return
            self._app = self._build_app(self._client)
            await _warm(self._app, self._identity)
            if self._cfg.mode == "socket":
                await self._connect(self._app, self._client)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "slack: bot %s in team %s, %s",
            self._identity.get("user"),
            self._identity.get("team"),
            "socket mode" if self._socket else f"HTTP events on {self._cfg.events_path}",
        )

    async def stop(self) -> None:
        self._app = None  # a late HTTP event now gets 503 and Slack retries it later
        socket, self._socket = self._socket, None
        if socket is not None:
            try:
                await socket.close_async()
            except Exception as exc:
                log.warning("slack: socket mode did not close cleanly: %s", brief(exc))
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self._client = None
        self._send_only = False

    def health(self) -> Health:
        if self._send_only and self._client is not None:
            return Health(True, "sending only")
        if self._client is None or self._app is None:
            return Health(False, "not started")
        if self._socket is not None:
            connected = _socket_connected(self._socket)
            return Health(connected, f"socket mode {'connected' if connected else 'reconnecting'}")
        return Health(True, f"HTTP events on {self._cfg.events_path}")

    async def probe(self) -> str:
        async with aiohttp.ClientSession() as session:
            client = web_client(self._cfg, self._metrics, session)
            identity = await auth_test(client)
            mode = "HTTP events"
            if self._cfg.app_token is not None:
                await call("apps.connections.open", open_socket(client, self._cfg))
                mode = "socket mode"
        return f"bot {identity.get('user')} in team {identity.get('team')} ({mode})"

    # ------------------------------------------------------------------------------ sending

    async def send(self, outbound: Outbound) -> str:
        client = self._client
        if client is None:
            raise DeliveryFailed("slack: not started")
        return await _slack_send.post(client, outbound, self._metrics)

    def live(self, inbound: Inbound) -> SlackLive | None:
        """Slack's chat streams in the question's thread, else a message updated in place."""
        settings = self._cfg.streaming
        dm = inbound.kind is ChatKind.DM
        if not (settings.dms if dm else settings.groups) or self._client is None:
            return None
        return SlackLive(
            self._client, channel=inbound.chat_id,
            thread=inbound.thread_id or (None if dm else inbound.message_id),
            stream_thread=inbound.thread_id or inbound.message_id,
            # A stream outside a DM is shown to the person who asked.
            recipient=None if dm else (inbound.sender_id, inbound.workspace or ""),
            settings=settings, native=not self._streams_refused, refused=self._refuse_streams,
        )  # fmt: skip

    def _refuse_streams(self) -> None:
        self._streams_refused = True

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        return self._progress(inbound)

    @asynccontextmanager
    async def _progress(self, inbound: Inbound) -> AsyncIterator[None]:
        """A reaction on the asking message while the backend works, removed before the answer."""
        name = self._cfg.progress_reaction
        if not name or not inbound.message_id or self._client is None:
            yield
            return
        added = await self._react("reactions_add", inbound, name)
        status = await self._status(inbound, "is thinking…")
        try:
            yield
        finally:
            if status:
                await self._status(inbound, "")
            if added:
                await self._react("reactions_remove", inbound, name)

    async def _status(self, inbound: Inbound, status: str) -> bool:
        """The assistant thread's status line in a DM (apps with Slack's assistant feature);
        refused once, it is not tried again."""
        client = self._client
        if self._status_refused or client is None or inbound.kind is not ChatKind.DM:
            return False
        try:
            await client.assistant_threads_setStatus(
                channel_id=inbound.chat_id,
                thread_ts=inbound.thread_id or str(inbound.message_id),
                status=status,
            )
        except SlackApiError as exc:
            self._status_refused = True
            log.info("slack: no assistant status (%s); the reaction shows progress",
                     exc.response.get("error"))  # fmt: skip
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("slack assistant.threads.setStatus failed: %r", exc)
            return False
        return True

    async def _react(self, method: str, inbound: Inbound, name: str) -> bool:
        client = self._client
        if client is None:
            return False  # stopped meanwhile: the reaction is cosmetic, never an error
        try:
            await getattr(client, method)(
                channel=inbound.chat_id, timestamp=inbound.message_id, name=name
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in _REACTION_SETTLED:
                return True
            log.warning(
                "slack %s on %s/%s failed: %s", method, inbound.chat_id, inbound.message_id, error
            )
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("slack %s failed: %s", method, brief(exc))
            return False
        return True

    # ------------------------------------------------------------------------------ receiving

    def _build_app(self, client: AsyncWebClient) -> AsyncApp:
        secret = self._cfg.signing_secret
        app = AsyncApp(
            client=client,
            signing_secret=secret.get_secret_value() if secret else "",
            # Run the listener (the router's durable accept) before acknowledging: an event
            # acknowledged is never lost, and one that failed gets Slack's retry.
            process_before_response=True,
            name="botbridge",
        )

        async def on_message(body: dict[str, Any], context: AsyncBoltContext) -> None:
            await self._on_event(body, context)

        async def on_other(body: dict[str, Any]) -> None:
            log.debug("slack %s event acknowledged, not used", body.get("event", {}).get("type"))

        async def not_accepted(error: Exception) -> BoltResponse:
            # The store could not take the event: 503 (Socket Mode: no ack), Slack retries it.
            log.error("slack: event not accepted, Slack will retry it: %r", error)
            return BoltResponse(status=503, body="not accepted; retry later")

        # A listener for every event type, so that bolt never answers 404 (Slack would retry).
        app.event("message")(on_message)
        app.event("app_mention")(on_message)
        app.event(re.compile(".+"))(on_other)
        app.error(not_accepted)
        return app

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        bot_user_id = context.bot_user_id or self._identity.get("user_id")
        inbound = to_inbound(
            body, bot_user_id=bot_user_id, threads_as_groups=self._cfg.threads_as_groups
        )
        if inbound is None:
            log.debug("slack event %s not a person's message: skipped", body.get("event_id"))
            return
        if self._deliver is None or self._parents is None:
            raise RuntimeError("slack adapter is not started")
        thread_ts = body["event"].get("thread_ts")
        if inbound.addressed is not Addressed.NOT and thread_ts and thread_ts != inbound.message_id:
            # Asked in a thread: the thread's parent message is the question's context.
            quote = await self._parents.quote(inbound.chat_id, thread_ts, inbound.sender_id)
            inbound = dataclasses.replace(inbound, quote=quote)
        await self._deliver(inbound)

    async def _on_http(self, request: web.Request) -> web.StreamResponse:
        app = self._app
        if app is None:
            return web.Response(status=503, text="starting or stopping")
        response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def _connect(self, app: AsyncApp, client: AsyncWebClient) -> None:
        assert self._cfg.app_token is not None
        self._socket = AsyncSocketModeHandler(
            app, self._cfg.app_token.get_secret_value(), web_client=client
        )
        socket_client = self._socket.client
        # The first URL is asked for here, so that a bad app token fails the start with
        # Slack's reason instead of the library retrying forever; later reconnects are its own.
        socket_client.wss_uri = await call("apps.connections.open", open_socket(client, self._cfg))
        try:
            async with asyncio.timeout(self._cfg.timeout):
                await self._socket.connect_async()
        except TimeoutError:
            raise SlackStartError(
                f"slack: socket mode did not connect within {self._cfg.timeout:g}s"
            ) from None

    # ------------------------------------------------------------------------------ helpers

    async def fetch_picture(self, picture: Picture, max_bytes: int) -> bytes:
        if self._session is None:
            raise PictureUnavailable("slack adapter is not started")
        return await download(
            self._session,
            picture,
            token=self._cfg.bot_token.get_secret_value(),
            api_base_url=self._cfg.api_base_url,
            max_bytes=max_bytes,
            timeout=self._cfg.timeout,
        )

    def _require_client(self) -> AsyncWebClient:
        if self._client is None:
            raise RuntimeError("slack adapter is not started")
        return self._client


# ---------------------------------------------------------------------------------- module helpers


async def _warm(app: AsyncApp, identity: dict[str, Any]) -> None:
    """Let bolt call auth.test (which it does, once, on the first event) before any event comes:
    otherwise the first events all wait for that call while later ones pass by, and a person's
    messages reach the bridge out of order. An internal event no listener answers."""
    body = {
        "type": "event_callback",
        "team_id": identity.get("team_id"),
        "event": {"type": "botbridge_warm_up"},
    }
    await app.async_dispatch(AsyncBoltRequest(body=json.dumps(body), mode="socket_mode"))


def _socket_connected(handler: AsyncSocketModeHandler) -> bool:
    client = handler.client
    session = client.current_session
    return not client.closed and not client.stale and session is not None and not session.closed
