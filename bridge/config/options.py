"""A route's `options:` and `models:`, checked against the type of the backend it routes to: what a
route may change about how that backend answers (its persona, its model), and nothing else.

    routes: [{chat: "-100123", backend: main, options: {system_prompt: "Answer in one line."}}]
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from ._base import PathError, Strict
from .backends import BackendConfig, _check_template, server_keeps_history


class OpenAIOptions(Strict):
    model: str | None = Field(None, min_length=1)
    system_prompt: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)


class NexusOptions(Strict):
    prompt_template: str | None = None

    @model_validator(mode="after")
    def _template(self) -> NexusOptions:
        if self.prompt_template is not None:
            _check_template("prompt_template", self.prompt_template, {"history", "text"}, "text")
        return self


class NugenOptions(Strict):
    prompt_id: str | None = None
    model_llm: str | None = Field(None, min_length=1)
    mode: Literal["vanilla", "agentic"] | None = None
    top_k: int | None = Field(None, ge=1, le=30)


class NoOptions(Strict):
    pass


OPTIONS: dict[str, type[Strict]] = {
    "openai": OpenAIOptions,
    "nexus": NexusOptions,
    "nugen": NugenOptions,
    "nexusgpt": NoOptions,
    "echo": NoOptions,
}
# The option `/model` and `models:` choose, for the types that have one.
MODEL_OPTION = {"openai": "model", "nugen": "model_llm"}


def options_for(path: str, options: dict[str, Any], backend: BackendConfig) -> dict[str, Any]:
    """The options as the backend gets them (only those set); a `PathError` naming the key for
    one its type does not have or a value it cannot take."""
    kind = OPTIONS[backend.type]
    try:
        checked = kind.model_validate(options).model_dump(exclude_unset=True)
    except ValidationError as exc:
        raise _path_error(path, exc.errors()[0], backend.type, kind) from None
    if "system_prompt" in checked and getattr(backend, "session", "bridge") != "bridge":
        raise PathError(f"{path}.system_prompt", server_keeps_history(backend.session))
    return checked


def check_models(path: str, models: list[str] | None, backend: BackendConfig) -> None:
    if models and backend.type not in MODEL_OPTION:
        raise PathError(path, f"{_a(backend.type)} backend has no model to choose")


def _path_error(
    path: str, error: dict[str, Any], backend_type: str, kind: type[Strict]
) -> PathError:
    loc = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        takes = ", ".join(kind.model_fields) or "none"
        message = f"unknown option for {_a(backend_type)} backend (it takes: {takes})"
    elif error["type"] == "value_error":
        # A model validator names its key first: "prompt_template: unknown field(s) …".
        head, _, tail = message.removeprefix("Value error, ").partition(": ")
        loc, message = (head, tail) if tail else (loc, head)
    else:
        message = message[:1].lower() + message[1:]
    return PathError(f"{path}.{loc}" if loc else path, message)


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"
