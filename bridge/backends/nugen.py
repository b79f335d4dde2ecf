"""The Nugen answer engine: `POST {base_url}/api/v3/answer-engine/{engine_id}/chat`.

The server keeps the conversation under a `conv_thread_id` that it returns with each answer; the
bridge stores it per session and sends it back (omitted on a session's first turn, and after
`/reset`, which empties the state).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

from ..config import NugenBackend as NugenConfig
from ..errors import BadResponse
from ..types import Answer, Question, Session, Usage
from . import _http


class NugenBackend:
    def __init__(self, name: str, config: NugenConfig) -> None:
        self.name = name
        self.config = config
        self._api = _http.Api(
            name, config, headers={"Authorization": f"Bearer {config.token.get_secret_value()}"}
        )
        self._url = (
            f"{config.base_url.rstrip('/')}/api/v3/answer-engine/"
            f"{quote(config.engine_id, safe='')}/chat"
        )

    async def ask(self, session: Session, question: Question) -> Answer:
        cfg = self.config
        thread = session.state.get("conv_thread_id")
        # A route's options (prompt_id, model_llm, mode, top_k) override the backend's own.
        body: dict[str, Any] = {
            "query": question.text,
            "model_llm": cfg.model_llm,
            "mode": cfg.mode,
            "top_k": cfg.top_k,
            **({"prompt_id": cfg.prompt_id} if cfg.prompt_id else {}),
            **question.options,
        }
        if thread:
            body["conv_thread_id"] = thread
        response = await self._api.call(
            "POST",
            self._url,
            json=body,
            # A resent turn that did reach the server would be in the thread twice; a first
            # turn only leaves an unused thread behind, so it may be resent.
            idempotent=not thread,
        )
        data = _http.json_body(response)
        answer = data.get("answer") if isinstance(data, dict) else None
        if not isinstance(answer, str):
            raise BadResponse(f"no text `answer` in the reply ({_http.describe(data)})")
        state = {**session.state, "conv_thread_id": data.get("conv_thread_id") or thread}
        return Answer(text=answer, usage=_usage(data.get("token_usage")), state=state)

    async def resume(self, session: Session, question: Question) -> Answer:
        answer = await self.ask(session, question)
        if not session.state.get("conv_thread_id"):
            return answer  # a first turn: at worst an unused thread is left behind
        # The thread may now hold the question twice: the API offers no way to look it up.
        return dataclasses.replace(answer, reasked=True)

    async def probe(self) -> str:
        # The API offers no listing or health call: the probe asks one short question, in a
        # thread of its own.
        response = await self._api.call(
            "POST",
            self._url,
            json={
                "query": "ping",
                "model_llm": self.config.model_llm,
                "mode": "vanilla",
                "top_k": 1,
            },
            idempotent=True,  # a thread of its own each time: nothing to repeat
        )
        data = _http.json_body(response)
        if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
            raise BadResponse(f"no text `answer` in the reply ({_http.describe(data)})")
        return f"engine {self.config.engine_id} answered ({self.config.model_llm})"

    async def aclose(self) -> None:
        await self._api.aclose()


def _usage(raw: Any) -> Usage:
    """`token_usage` as `input`/`output` or `input_tokens`/`output_tokens` (total is derived)."""
    if not isinstance(raw, dict):
        return Usage()

    def count(*keys: str) -> int | None:
        for key in keys:
            if isinstance(raw.get(key), int):
                return raw[key]
        return None

    return Usage(count("input_tokens", "input"), count("output_tokens", "output"))
