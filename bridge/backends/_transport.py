"""An httpx transport that sends through aiohttp's connection pool.

Backends keep httpx's API (requests, responses, exceptions); only the pool underneath changes.
httpcore's pool re-checks every idle connection on each request (a poll() syscall each): at 20
open connections that cost ~1 ms of CPU per request and capped the bridge near 260 messages/s,
where aiohttp's pool gives ~780 (bench/core.py). Errors are mapped so that `ConnectError` and
`ConnectTimeout` mean exactly "the request never reached the server" — the one case where a
non-idempotent call may be retried.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
from multidict import CIMultiDict


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS handshake: nothing was sent
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc)) from exc
    except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(str(exc)) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc)) from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientResponseError) as exc:
        # Disconnected mid-request: the server may have acted on it.
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, ssl_context: ssl.SSLContext | bool = True, limit: int = 100) -> None:
        self._ssl = ssl_context
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use: it needs the running loop
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl)
            # httpx decodes Content-Encoding itself; aiohttp must hand over the raw bytes.
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        with _mapped_errors():
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=CIMultiDict(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
