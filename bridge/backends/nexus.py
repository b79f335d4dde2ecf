"""Nexus v3 `interact`: `POST {base_url}/api/v3/`, one prompt in, one Ollama-style answer out.

The API keeps no conversation, so with `history: fold` the bridge keeps the recent exchanges in the
session state and folds them into each prompt through `turn_template` and `prompt_template`. The
answer is a JSON string inside a two-level `{"result": "OK", "payload": …}` envelope.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any

from ..config import NexusBackend as NexusConfig
from ..errors import BadResponse, ConfigError, Rejected, Unavailable
from ..text import strip_think
from ..types import Answer, Question, Session, Usage
from . import _http

log = logging.getLogger("bridge.backends.nexus")

_DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


class NexusBackend:
    def __init__(self, name: str, config: NexusConfig) -> None:
        self.name = name
        self.config = config
        headers = {
            "x-access-account": config.account,
            "x-access-authorization": config.access_key.get_secret_value(),
            "x-secret-key": config.secret_key.get_secret_value(),
            "x-api": config.api,
            "x-api-command": config.command,
        }
        self._url = config.base_url.rstrip("/") + "/api/v3/"
        self._api = _http.Api(name, config, headers=headers, verify=_tls(name, config))

    async def ask(self, session: Session, question: Question) -> Answer:
        cfg = self.config
        text = question.text
        history = _history(session.state) if cfg.history == "fold" else []
        template = question.options.get("prompt_template", cfg.prompt_template)
        answer, usage = await self._interact(self.fold(history, text, template))
        if cfg.history == "none":
            return Answer(text=answer, usage=usage)
        keep = cfg.history_turns
        history = [*history, {"user": text, "assistant": answer}][-keep:] if keep else []
        return Answer(text=answer, usage=usage, state={**session.state, "history": history})

    async def resume(self, session: Session, question: Question) -> Answer:
        return await self.ask(session, question)  # the API keeps nothing: asking again is harmless

    def fold(
        self, history: list[dict[str, str]], text: str, template: str | None = None
    ) -> str:
        """The prompt: `template` (a route's, else `prompt_template`) with the most recent turns
        that fit `history_max_chars`."""
        cfg = self.config
        if cfg.history == "none":
            return text
        turns: list[str] = []
        size = 0
        for turn in reversed(history[-cfg.history_turns :] if cfg.history_turns else []):
            rendered = cfg.turn_template.format(user=turn["user"], assistant=turn["assistant"])
            size += len(rendered)
            if size > cfg.history_max_chars:
                break
            turns.append(rendered)
        template = cfg.prompt_template if template is None else template
        return template.format(history="".join(reversed(turns)), text=text)

    async def _interact(self, prompt: str) -> tuple[str, Usage]:
        # The call changes nothing on the server (no conversation is kept): safe to retry.
        response = await self._api.call(
            "POST", self._url, json={"id": self.config.instance, "prompt": prompt}, idempotent=True
        )
        result = _unwrap(_http.json_body(response))
        answer = result.get("response")
        if not isinstance(answer, str):
            raise BadResponse(f"inner payload has no text `response` ({_http.describe(result)})")
        self._log_stats(result)
        usage = Usage(_count(result, "prompt_eval_count"), _count(result, "eval_count"))
        return strip_think(answer).strip(), usage

    def _log_stats(self, result: dict[str, Any]) -> None:
        # Ollama durations are nanoseconds; an operator reads seconds.
        durations = " ".join(
            f"{key.removesuffix('_duration')}={result[key] / 1e9:.2f}s"
            for key in _DURATIONS
            if isinstance(result.get(key), int | float)
        )
        log.info(
            "backend %s: done=%s done_reason=%s prompt_tokens=%s answer_tokens=%s %s",
            self.name,
            result.get("done"),
            result.get("done_reason"),
            result.get("prompt_eval_count"),
            result.get("eval_count"),
            durations,
        )
        if result.get("done_reason") == "length":
            log.warning("backend %s: the answer was cut at the model's length limit", self.name)

    async def probe(self) -> str:
        # v3 documents no listing or health command: the least invasive proof is one tiny prompt.
        answer, usage = await self._interact(self.config.probe_prompt)
        tokens = f", {usage.total_tokens} tokens" if usage.total_tokens is not None else ""
        return f"instance {self.config.instance} answered {answer[:40]!r}{tokens}"

    async def aclose(self) -> None:
        await self._api.aclose()


def _tls(name: str, config: NexusConfig) -> ssl.SSLContext | bool:
    if not config.verify:
        log.warning(
            "backend %s: TLS certificate verification is OFF (verify: false); "
            "anyone on the path can read the keys",
            name,
        )
        return False
    if config.ca_file:
        try:
            return ssl.create_default_context(cafile=config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"backends.{name}.ca_file", f"cannot load {config.ca_file}: {exc}"
            ) from None
    return True


def _unwrap(body: Any) -> dict[str, Any]:
    """The Ollama-style object inside `{"result", "payload": {"result", "payload": "<json>"}}`."""
    if not isinstance(body, dict):
        raise BadResponse(f"answer is not an object ({_http.describe(body)})")
    if body.get("result") != "OK":
        # The API refused the call itself (account, instance, command).
        raise Rejected(f"result {body.get('result')!r}: {_message(body)}")
    inner = body.get("payload")
    if not isinstance(inner, dict):
        raise BadResponse(f"no payload object ({_http.describe(body)})")
    if inner.get("result") != "OK":
        # The instance behind the API failed (model down, overloaded).
        raise Unavailable(f"instance result {inner.get('result')!r}: {_message(inner)}")
    raw = inner.get("payload")
    try:
        result = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise BadResponse(f"payload.payload is not JSON ({_http.describe(raw)})") from None
    if not isinstance(result, dict):
        raise BadResponse(f"payload.payload is not an object ({_http.describe(result)})")
    return result


def _message(level: dict[str, Any]) -> str:
    return str(level.get("message") or "(no message)")[:300]


def _count(result: dict[str, Any], key: str) -> int | None:
    value = result.get(key)
    return value if isinstance(value, int) else None


def _history(state: Any) -> list[dict[str, str]]:
    turns = state.get("history", []) if hasattr(state, "get") else []
    return [
        t
        for t in turns
        if isinstance(t, dict)
        and isinstance(t.get("user"), str)
        and isinstance(t.get("assistant"), str)
    ]
