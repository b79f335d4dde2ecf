"""A fake Nexus v3 server: `POST /api/v3/` with the five `x-*` headers and `{"id", "prompt"}`.

It checks the credentials (401 otherwise, like a gateway would), answers `echo: {prompt}` wrapped
the way the real API does — a JSON *string* of an Ollama-style object inside two `result: OK`
levels — and can be told to fail at either level (`fail_outer` / `fail_inner`) with a message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .base import FakeServer

Reply = Callable[[str], str]


class FakeNexus(FakeServer):
    def __init__(
        self,
        *,
        account: str = "acct-1",
        access_key: str = "nexus-access-key-1",
        secret_key: str = "nexus-secret-key-1",
        api: str = "chat",
        instance: str = "inst-1",
        reply: Reply = lambda prompt: f"echo: {prompt}",
    ) -> None:
        self.credentials = {
            "x-access-account": account,
            "x-access-authorization": access_key,
            "x-secret-key": secret_key,
            "x-api": api,
        }
        self.instance = instance
        self.reply = reply
        self.prompts: list[str] = []
        self.outer_failure: str | None = None
        self.inner_failure: str | None = None
        super().__init__()

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/api/v3/", self._interact)

    def fail_outer(self, message: str) -> None:
        """The next call answers `result: ERROR` at the top level."""
        self.outer_failure = message

    def fail_inner(self, message: str) -> None:
        """The next call answers `result: ERROR` inside the payload (the instance failed)."""
        self.inner_failure = message

    async def _interact(self, request: web.Request) -> web.Response:
        headers = request.headers
        if any(headers.get(k) != v for k, v in self.credentials.items()):
            return web.json_response({"result": "ERROR", "message": "Unauthorized"}, status=401)
        if headers.get("x-api-command") != "interact":
            return web.json_response({"result": "ERROR", "message": "unknown command"})
        body = await request.json()
        if body.get("id") != self.instance:
            return web.json_response({"result": "ERROR", "message": "instance not found"})
        if self.outer_failure is not None:
            message, self.outer_failure = self.outer_failure, None
            return web.json_response({"result": "ERROR", "message": message})
        if self.inner_failure is not None:
            message, self.inner_failure = self.inner_failure, None
            return web.json_response(
                {"result": "OK", "payload": {"result": "ERROR", "message": message}}
            )
        prompt = body["prompt"]
        self.prompts.append(prompt)
        return web.json_response(
            {
                "result": "OK",
                "payload": {"result": "OK", "payload": json.dumps(_ollama(self.reply(prompt)))},
            }
        )


def _ollama(text: str) -> dict[str, Any]:
    return {
        "model": "llama3",
        "created_at": "2025-01-01T00:00:00Z",
        "response": text,
        "done": True,
        "done_reason": "stop",
        "total_duration": 1_500_000_000,
        "load_duration": 100_000_000,
        "prompt_eval_count": 11,
        "prompt_eval_duration": 200_000_000,
        "eval_count": 5,
        "eval_duration": 1_200_000_000,
    }
