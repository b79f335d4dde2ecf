"""A fake Nugen answer engine: `POST /api/v3/answer-engine/{engine_id}/chat` with a Bearer token.

It validates the body the way a FastAPI server does (422 with a `detail` list), keeps each
conversation under the `conv_thread_id` it hands out, and answers `echo: {query}` with
`token_usage`. `threads` holds every conversation's queries, for the tests to inspect.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from aiohttp import web

from .base import FakeServer

Reply = Callable[[str, list[str]], str]


class FakeNugen(FakeServer):
    def __init__(
        self,
        *,
        token: str = "nugen-token-1",
        engine_id: str = "eng-1",
        reply: Reply = lambda query, earlier: f"echo: {query}",
    ) -> None:
        self.token = token
        self.engine_id = engine_id
        self.reply = reply
        self.threads: dict[str, list[str]] = {}
        self._ids = itertools.count(1)
        super().__init__()

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/api/v3/answer-engine/{engine}/chat", self._chat)

    async def _chat(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"detail": "Invalid or expired token"}, status=401)
        if request.match_info["engine"] != self.engine_id:
            return web.json_response({"detail": "Answer engine not found"}, status=404)
        body = await request.json()
        problems = _validate(body)
        if problems:
            return web.json_response({"detail": problems}, status=422)
        thread = body.get("conv_thread_id")
        if thread is None:
            thread = f"conv-{next(self._ids)}"
            self.threads[thread] = []
        elif thread not in self.threads:
            return web.json_response({"detail": "Conversation thread not found"}, status=404)
        earlier = list(self.threads[thread])
        self.threads[thread].append(body["query"])
        answer = self.reply(body["query"], earlier)
        tokens_in, tokens_out = len(body["query"].split()) + 10, len(answer.split())
        return web.json_response(
            {
                "answer": answer,
                "conv_thread_id": thread,
                "sources": [],
                "token_usage": {
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
            }
        )


def _validate(body: object) -> list[dict[str, object]]:
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "must be an object"}]
    problems = []
    if not isinstance(body.get("query"), str) or not body["query"]:
        problems.append({"loc": ["body", "query"], "msg": "field required"})
    if body.get("mode", "vanilla") not in ("vanilla", "agentic"):
        problems.append({"loc": ["body", "mode"], "msg": "must be vanilla or agentic"})
    top_k = body.get("top_k", 5)
    if not isinstance(top_k, int) or not 1 <= top_k <= 30:
        problems.append({"loc": ["body", "top_k"], "msg": "must be between 1 and 30"})
    return problems
