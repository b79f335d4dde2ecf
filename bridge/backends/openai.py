"""Any OpenAI-compatible `POST {base_url}/chat/completions` (nanobot's server among them).

Three ways to carry a conversation (`session:`): `header` sends the session id in a header and only
the new message (the seed contract of nanobot's API); `body` sends it as a body field (`session_id`,
what nanobot-ai 0.3.5's `serve` actually reads); `bridge` keeps the history here, trimmed, and sends
it whole. After `/reset` the id sent is `{key}#{n}`: a server keying history by id starts over.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import OpenAIBackend as OpenAIConfig
from ..errors import BadResponse, Rejected, Unavailable
from ..types import Answer, Session, Usage
from . import _http

# nanobot answers HTTP 200 with this content when its own LLM is down.
_NANOBOT_FAILURE = "Error calling LLM:"


class OpenAIBackend:
    def __init__(self, name: str, config: OpenAIConfig) -> None:
        self.name = name
        self.config = config
        headers = {}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._api = _http.Api(
            name, config, base_url=config.base_url.rstrip("/") + "/", headers=headers
        )

    async def ask(self, session: Session, text: str) -> Answer:
        cfg = self.config
        history: list[dict[str, str]] = list(session.state.get("history", []))
        messages = []
        if cfg.session == "bridge":
            if cfg.system_prompt:
                messages.append({"role": "system", "content": cfg.system_prompt})
            messages.extend(history)
        messages.append({"role": "user", "content": text})

        body: dict[str, Any] = {**cfg.extra_body, "messages": messages}
        if cfg.model:
            body["model"] = cfg.model
        headers = {}
        if cfg.session == "header":
            headers[cfg.session_header] = session.wire_id
        elif cfg.session == "body":
            body[cfg.session_field] = session.wire_id

        response = await self._api.call("POST", "chat/completions", headers=headers, json=body)
        content, usage = _parse(_http.json_body(response))
        if content.startswith(_NANOBOT_FAILURE):
            raise Unavailable(f"server reports its LLM failed: {content[:200]}")

        state = None
        if cfg.session == "bridge":
            history += [
                {"role": "user", "content": text},
                {"role": "assistant", "content": content},
            ]
            state = {
                **session.state,
                "history": _trim(history, cfg.history.max_messages, cfg.history.max_chars),
            }
        return Answer(text=content, usage=usage, state=state)

    async def resume(self, session: Session, text: str) -> Answer:
        answer = await self.ask(session, text)
        if self.config.session == "bridge":
            return answer  # the history is ours, and holds the question once
        # The server keeps history by session id and has no way to look a turn up: the question
        # may now be in it twice.
        return dataclasses.replace(answer, reasked=True)

    async def probe(self) -> str:
        try:
            response = await self._api.call("GET", "models")
        except Rejected as exc:
            if exc.status == 404:  # a server without the list endpoint still answered us
                return "reachable (no /models endpoint)"
            raise
        data = _http.json_body(response)
        models = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]
        return (
            f"{len(models)} model(s): {', '.join(map(str, models[:3]))}" if models else "reachable"
        )

    async def aclose(self) -> None:
        await self._api.aclose()


def _parse(data: Any) -> tuple[str, Usage]:
    try:
        message = data["choices"][0]["message"]
        content = message.get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise BadResponse(f"no choices[0].message in the answer: {str(data)[:120]!r}") from None
    if not isinstance(content, str):
        raise BadResponse("choices[0].message.content is not text")
    usage = data.get("usage") if isinstance(data, dict) else None
    if isinstance(usage, dict):
        return content, Usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return content, Usage()


def _trim(history: list[dict[str, str]], max_messages: int, max_chars: int) -> list[dict[str, str]]:
    """The most recent messages within both limits, starting at a user turn."""
    kept: list[dict[str, str]] = []
    size = 0
    for message in reversed(history[-max_messages:] if max_messages else []):
        size += len(message["content"])
        if size > max_chars:
            break
        kept.append(message)
    kept.reverse()
    while kept and kept[0]["role"] != "user":
        kept.pop(0)
    return kept
