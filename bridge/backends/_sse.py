"""Server-sent events from an LLM API: the request opened under the bridge's retry policy (a
retry only ever happens before the answer began), then the events read against the deadline of
the whole answer (`timeout`), so a server dripping events cannot hold a user forever.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from ..errors import BadResponse, Timeout
from ._http import Api, _map_transport_error, policy, raise_for_status


def is_event_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").partition(";")[0].strip() == (
        "text/event-stream"
    )


async def open_stream(
    api: Api,
    url: str,
    *,
    json_body: Any,
    headers: Mapping[str, str],
    idempotent: bool,
    deadline: float,
) -> httpx.Response:
    """POST `json_body` and return the response, unread, once its status says the answer began
    (by `deadline`, loop time, retries included). The caller closes it. Raises a `BackendError`
    like any other call."""
    config = api.config

    async def attempt() -> httpx.Response:
        request = api.client.build_request(
            "POST", url, json=json_body, headers={**headers, "Accept": "text/event-stream"}
        )
        try:
            async with asyncio.timeout_at(deadline):
                response = await api.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _map_transport_error(exc) from None
        except TimeoutError:
            raise Timeout(f"no answer began in {config.timeout:g}s") from None
        if response.status_code >= 400:
            try:
                async with asyncio.timeout(config.connect_timeout):
                    await response.aread()  # the error's detail, for the log
            except (TimeoutError, httpx.TransportError):
                pass
            finally:
                await response.aclose()
            raise_for_status(response)
        return response

    return await policy(config, api.name, idempotent, deadline)(attempt)


async def events(response: httpx.Response, deadline: float) -> AsyncIterator[dict[str, Any]]:
    """The JSON object of each `data:` event, until `data: [DONE]` or the end of the body."""
    source = EventSource(response).aiter_sse()
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await anext(source)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise Timeout("the answer did not finish in time") from None
            except httpx.TransportError as exc:
                raise _map_transport_error(exc) from None
            except SSEError as exc:
                raise BadResponse(f"not an event stream: {exc}") from None
            if not event.data or event.event not in ("", "message"):
                continue  # keep-alives and named events carry no answer text
            if event.data.strip() == "[DONE]":
                return
            try:
                data = json.loads(event.data)
            except json.JSONDecodeError:
                raise BadResponse(f"an event is not JSON: {event.data[:80]!r}") from None
            if not isinstance(data, dict):
                raise BadResponse("an event is not a JSON object")
            yield data
    finally:
        await source.aclose()
