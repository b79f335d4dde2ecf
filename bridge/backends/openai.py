"""Any OpenAI-compatible `POST {base_url}/chat/completions` (nanobot's server among them).

Three ways to carry a conversation (`session:`): `header` sends the session id in a header and only
the new message (the seed contract of nanobot's API); `body` sends it as a body field (`session_id`,
what nanobot-ai 0.3.5's `serve` actually reads); `bridge` keeps the history here, trimmed, and sends
it whole. After `/reset` the id sent is `{key}#{n}`: a server keying history by id starts over.

A route's options (`model`, `system_prompt`, `temperature`, `max_tokens`) override the backend's
own per request. With `vision: true` a picture goes as an `image_url` content part (a data URI);
the kept history holds only a `[picture]` placeholder for it, never the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ..config import OpenAIBackend as OpenAIConfig
from ..errors import BadResponse, Rejected, Timeout, Unavailable
from ..types import Answer, Question, Session, Usage
from . import _http, _sse

# nanobot answers HTTP 200 with this content when its own LLM is down.
_NANOBOT_FAILURE = "Error calling LLM:"
PICTURE = "[picture]"  # what the kept history says in place of a picture
_BODY_OPTIONS = ("temperature", "max_tokens")


class OpenAIBackend:
    def __init__(self, name: str, config: OpenAIConfig) -> None:
        self.name = name
        self.config = config
        self.streaming = config.stream  # the router asks `stream` instead of `ask`
        headers = {}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._api = _http.Api(
            name, config, base_url=config.base_url.rstrip("/") + "/", headers=headers
        )

    @property
    def stateless(self) -> bool:
        return self.config.session == "bridge"

    async def ask(self, session: Session, question: Question) -> Answer:
        body, headers = self._request(session, question)
        response = await self._api.call(
            "POST",
            "chat/completions",
            headers=headers,
            json=body,
            # Only a conversation the bridge keeps may be asked twice: a server keeping history
            # would record the question again.
            idempotent=self.config.session == "bridge",
        )
        content, usage = _parse(_http.json_body(response))
        if content.startswith(_NANOBOT_FAILURE):
            raise Unavailable(_nanobot_failure(content))
        return Answer(text=content, usage=usage, state=self._state(session, question, content))

    async def stream(self, session: Session, question: Question) -> AsyncIterator[str | Answer]:
        """The answer as the server writes it (`stream: true`): text increments, then the whole
        `Answer`. A server that answers with plain JSON anyway gives one increment."""
        body, headers = self._request(session, question)
        body["stream"] = True
        deadline = self._api.deadline()
        response = await _sse.open_stream(
            self._api, "chat/completions", json_body=body, headers=headers,
            idempotent=self.config.session == "bridge", deadline=deadline,
        )  # fmt: skip
        content, shown, usage = "", 0, Usage()
        try:
            async for delta, found in _deltas(response, deadline):
                usage = found or usage
                content += delta
                # nanobot's failure text must never show: hold whatever could be its beginning.
                if delta and (shown or not _may_be_failure(content)):
                    yield content[shown:]
                    shown = len(content)
        finally:
            await response.aclose()
        if content.startswith(_NANOBOT_FAILURE):
            raise Unavailable(_nanobot_failure(content))
        if shown < len(content):
            yield content[shown:]
        yield Answer(text=content, usage=usage, state=self._state(session, question, content))

    def _request(
        self, session: Session, question: Question
    ) -> tuple[dict[str, Any], dict[str, str]]:
        cfg = self.config
        options = question.options
        if question.images and not cfg.vision:
            raise Rejected("a picture for a backend without vision: true (not sent)")
        messages: list[dict[str, Any]] = []
        if cfg.session == "bridge":
            system_prompt = options.get("system_prompt", cfg.system_prompt)
            if system_prompt:
                messages.append({"role": "system", "content": system_prompt})
            messages.extend(session.state.get("history", []))
        messages.append({"role": "user", "content": _content(question)})

        body: dict[str, Any] = {**cfg.extra_body, "messages": messages}
        model = options.get("model", cfg.model)
        if model:
            body["model"] = model
        body.update((key, options[key]) for key in _BODY_OPTIONS if key in options)
        headers = {}
        if cfg.session == "header":
            headers[cfg.session_header] = session.wire_id
        elif cfg.session == "body":
            body[cfg.session_field] = session.wire_id
        return body, headers

    def _state(
        self, session: Session, question: Question, content: str
    ) -> dict[str, Any] | None:
        """The session's state after this turn: the trimmed history when the bridge keeps it."""
        cfg = self.config
        if cfg.session != "bridge":
            return None
        history: list[dict[str, Any]] = list(session.state.get("history", []))
        history += [
            {"role": "user", "content": _remembered(question)},
            {"role": "assistant", "content": content},
        ]
        return {
            **session.state,
            "history": _trim(history, cfg.history.max_messages, cfg.history.max_chars),
        }

    async def resume(self, session: Session, question: Question) -> Answer:
        answer = await self.ask(session, question)
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


def _content(question: Question) -> str | list[dict[str, Any]]:
    """The user message's content: plain text, or text and image parts for a picture."""
    if not question.images:
        return question.text
    parts: list[dict[str, Any]] = []
    if question.text:
        parts.append({"type": "text", "text": question.text})
    for image in question.images:
        encoded = base64.b64encode(image.data).decode("ascii")
        url = f"data:{image.mime};base64,{encoded}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _remembered(question: Question) -> str:
    """The user turn as the kept history holds it: a placeholder instead of picture bytes."""
    if not question.images:
        return question.text
    return f"{PICTURE} {question.text}".rstrip()


def _parse(data: Any) -> tuple[str, Usage]:
    try:
        message = data["choices"][0]["message"]
        content = message.get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise BadResponse(
            f"no choices[0].message in the answer ({_http.describe(data)})"
        ) from None
    if not isinstance(content, str):
        raise BadResponse("choices[0].message.content is not text")
    return content, _usage(data) or Usage()


async def _deltas(
    response: httpx.Response, deadline: float
) -> AsyncIterator[tuple[str, Usage | None]]:
    """(text increment, usage if this event reports it) for each event of a streamed answer."""
    if not _sse.is_event_stream(response):  # the server ignored `stream: true`
        try:
            async with asyncio.timeout_at(deadline):
                await response.aread()
        except TimeoutError:
            raise Timeout("the answer did not finish in time") from None
        yield _parse(_http.json_body(response))
        return
    async for data in _sse.events(response, deadline):
        if isinstance(data.get("error"), dict):  # some servers report a failure mid-stream
            raise Unavailable(f"server error mid-answer: {data['error'].get('message', '')}")
        yield _delta(data), _usage(data)


def _delta(data: dict[str, Any]) -> str:
    choices = data.get("choices")
    if not choices:
        return ""  # the usage event has none
    try:
        content = choices[0].get("delta", {}).get("content") or ""
    except (AttributeError, IndexError, TypeError):
        raise BadResponse(f"no choices[0].delta in an event: {str(data)[:120]!r}") from None
    if not isinstance(content, str):
        raise BadResponse("choices[0].delta.content is not text")
    return content


def _usage(data: Any) -> Usage | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if isinstance(usage, dict):
        return Usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return None


def _nanobot_failure(content: str) -> str:
    # Its first line only: a provider's error text further down may quote the request.
    return f"server reports its LLM failed: {content.splitlines()[0][:120]}"


def _may_be_failure(content: str) -> bool:
    return _NANOBOT_FAILURE.startswith(content) or content.startswith(_NANOBOT_FAILURE)


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
