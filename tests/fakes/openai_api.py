"""A fake OpenAI-compatible server: POST /v1/chat/completions and GET /v1/models.

By default it answers `echo: {last user message}` (a picture in it as `[image image/png, N
bytes]`); `reply` can be replaced by a function of the request body and headers. It keeps its own history per session id (header or body field), like
nanobot's server, so tests can see what a server-side session would hold.

A request with `stream: true` is answered with server-sent events the way OpenAI (and nanobot-ai
0.3.5's `serve`) sends them: a role chunk, `delta.content` chunks of `stream.chunk` characters
every `stream.delay` seconds, a usage chunk, `data: [DONE]`. Faults: `stream.stall_after` (that
many chunks, then silence with the connection open, until `release()`), `stream.drop_after`
(that many chunks, then the connection is cut). `finished` holds the loop time at which each
streamed answer's last chunk was written.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .base import FakeServer

Reply = Callable[[dict[str, Any], dict[str, str]], str]


def echo_reply(body: dict[str, Any], headers: dict[str, str]) -> str:
    return f"echo: {text_of(body['messages'][-1]['content'])}"


def text_of(content: str | list[dict[str, Any]]) -> str:
    """A message's content as text: image parts (data URIs) described by type and size."""
    if isinstance(content, str):
        return content
    found = []
    for part in content:
        if part["type"] == "text":
            found.append(part["text"])
        elif part["type"] == "image_url":
            head, _, data = part["image_url"]["url"].partition(",")
            mime = head.removeprefix("data:").removesuffix(";base64")
            found.append(f"[image {mime}, {len(base64.b64decode(data))} bytes]")
    return " ".join(found)


@dataclass
class Streaming:
    chunk: int = 4  # characters per event
    delay: float = 0.0  # seconds between events (the model's pace, not synchronisation)
    role_chunk: bool = True
    usage_chunk: bool = True
    stall_after: int | None = None  # events, then silence until release()
    drop_after: int | None = None  # events, then the connection is cut
    honoured: bool = True  # False: answer `stream: true` with plain JSON, as some servers do


class FakeOpenAI(FakeServer):
    def __init__(
        self, reply: Reply = echo_reply, model: str | None = None, *, record: bool = True
    ) -> None:
        self.reply = reply
        self.model = model  # when set, any other model name is a 400 (nanobot does this)
        self.sessions: dict[str, list[str]] = defaultdict(list)
        self._record = record
        self.stream = Streaming()
        self.finished: list[float] = []
        self._released = asyncio.Event()
        super().__init__(record=record)

    def release(self) -> None:
        """End every stall: stalled streams go on."""
        self._released.set()

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/v1/models", self._models)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.model and body.get("model") not in (None, self.model):
            return web.json_response(
                {"error": {"message": f"model {body['model']} not found"}}, status=400
            )
        sid = request.headers.get("x-session-key") or body.get("session_id")
        if sid and self._record:
            self.sessions[sid].append(body["messages"][-1]["content"])
        content = self.reply(body, dict(request.headers))
        if body.get("stream") and self.stream.honoured:
            return await self._stream(request, content)
        if "<invalid-utf8>" in content:  # a server that mangles its encoding
            payload = json.dumps(self._completion(content), ensure_ascii=False).encode()
            return web.Response(
                body=payload.replace(b"<invalid-utf8>", b"\xff\xfe"),
                content_type="application/json",
            )
        return web.json_response(self._completion(content))

    def _completion(self, content: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": self.model or "fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }

    def asked(self) -> list[Any]:
        """The content of the last (user) message of each chat request, in order."""
        return [c.json["messages"][-1]["content"] for c in self.calls_to("/v1/chat/completions")]

    async def _stream(self, request: web.Request, content: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        plan = self.stream
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": self.model or "f"}

        async def event(data: Any) -> None:
            payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            await response.write(f"data: {payload}\n\n".encode())

        def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if plan.role_chunk:
            await event(choice({"role": "assistant", "content": ""}))
        size = max(1, plan.chunk)
        for number, start in enumerate(range(0, len(content), size)):
            if plan.drop_after is not None and number >= plan.drop_after:
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            if plan.stall_after is not None and number >= plan.stall_after:
                await self._released.wait()
            if number and plan.delay:
                await asyncio.sleep(plan.delay)
            await event(choice({"content": content[start : start + size]}))
        await event(choice({}, "stop"))
        if plan.usage_chunk:
            usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
            await event({**base, "choices": [], "usage": usage})
        await event("[DONE]")
        self.finished.append(asyncio.get_running_loop().time())
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model or "fake"}]})


async def _serve(port: int) -> None:
    import asyncio

    server = FakeOpenAI(record=False)  # standalone, for benchmarks: nothing kept
    await server.start_on(port)
    print(server.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(description="Serve the fake OpenAI API until killed.")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_serve(parser.parse_args().port))
