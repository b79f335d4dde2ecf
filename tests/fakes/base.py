"""What every fake remote server shares: a real aiohttp server on 127.0.0.1 (random port), a record
of every request, and fault switches that apply to the next matching requests.

    server.fail_next(503)                      # next request gets HTTP 503
    server.fail_next(429, retry_after=1)       # 429 with Retry-After: 1
    server.slow_next(2.0)                      # next answer comes 2 s late
    server.drip_next(5.0)                      # 200 at once, then a byte every 50 ms for 5 s
    server.drop_next()                         # connection closed without an answer
    server.lose_answer_next()                  # request processed, then the connection is cut
    server.malformed_next()                    # HTTP 200 with a body that is not JSON
    server.fail_next(500, path="/v1/chat", times=3, body={"error": {"message": "boom"}})

Tests wait on what the server saw with `await server.wait_for(lambda calls: ..., timeout)`: it
polls the record against a deadline, never sleeps blindly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode()))


@dataclass
class Fault:
    kind: str  # "status", "slow", "drop", "lose", "malformed", "drip"
    times: int = 1
    path: str | None = None  # applies to paths starting with this; None: any
    status: int = 500
    retry_after: float | None = None
    body: Any = None
    delay: float = 0.0
    hits: int = field(default=0)


class FakeServer:
    """Subclasses add routes in `setup(app)` and answer like the real API."""

    def __init__(self, *, record: bool = True) -> None:
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.in_flight = 0  # requests being handled now, and the most ever at once
        self.max_in_flight = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        # Unrecorded (a benchmark's long run) has no faults and keeps no calls.
        self.app = web.Application(middlewares=[self._record_and_inject] if record else [])
        self.setup(self.app)

    def setup(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeServer:
        return await self.start_on(0)

    async def start_on(self, port: int) -> FakeServer:
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=0.25
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------ faults

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        path: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> Fault:
        return self._add(Fault("status", times, path, status, retry_after, body))

    def slow_next(self, delay: float, *, times: int = 1, path: str | None = None) -> Fault:
        return self._add(Fault("slow", times, path, delay=delay))

    def drop_next(self, *, times: int = 1, path: str | None = None) -> Fault:
        return self._add(Fault("drop", times, path))

    def lose_answer_next(self, *, times: int = 1, path: str | None = None) -> Fault:
        """Process the request (a message is posted), then cut the connection before the answer:
        the client cannot tell whether it worked."""
        return self._add(Fault("lose", times, path))

    def drip_next(self, duration: float, *, times: int = 1, path: str | None = None) -> Fault:
        """Answer 200 at once, then send the body a byte at a time for `duration` seconds."""
        return self._add(Fault("drip", times, path, delay=duration))

    def malformed_next(self, *, times: int = 1, path: str | None = None) -> Fault:
        return self._add(Fault("malformed", times, path))

    def _add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path is None or path.startswith(fault.path):
                fault.hits += 1
                if fault.hits >= fault.times:
                    self.faults.remove(fault)
                return fault
        return None

    @web.middleware
    async def _record_and_inject(self, request: web.Request, handler) -> web.StreamResponse:
        body = await request.read()
        call = Call(request.method, request.path, dict(request.query), dict(request.headers), body)
        self.calls.append(call)
        self._changed.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, handler)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, handler) -> web.StreamResponse:
        fault = self._take_fault(request.path)
        if fault is not None:
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            elif fault.kind == "drop":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError  # aiohttp drops the handler quietly
            elif fault.kind == "lose":
                await handler(request)
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            elif fault.kind == "drip":
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                await response.prepare(request)
                deadline = asyncio.get_running_loop().time() + fault.delay
                while asyncio.get_running_loop().time() < deadline:
                    await response.write(b" ")
                    await asyncio.sleep(0.05)  # the drip's pace, not synchronisation
                await response.write_eof(b"{}")
                return response
            elif fault.kind == "malformed":
                return web.Response(status=200, text="<html>not json", content_type="text/html")
            elif fault.kind == "status":
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                payload = (
                    fault.body
                    if fault.body is not None
                    else {"error": {"message": f"injected {fault.status}"}}
                )
                return web.json_response(payload, status=fault.status, headers=headers)
        return await handler(request)

    # ------------------------------------------------------------------------------ waiting

    def calls_to(self, path: str, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.path == path and (method is None or c.method == method)]

    async def wait_for(self, predicate: Callable[[list[Call]], Any], timeout: float = 10.0) -> Any:
        """Wait until `predicate(self.calls)` is truthy; return its value. Fails at the deadline."""
        async with asyncio.timeout(timeout):
            while True:
                result = predicate(self.calls)
                if result:
                    return result
                self._changed.clear()
                await self._changed.wait()


async def eventually(
    predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.01
) -> Any:
    """Poll `predicate()` until it is truthy (returning it) or fail at the deadline."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(every)
