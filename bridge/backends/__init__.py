"""Backends: the only code that speaks an LLM API. One module per API; `build_backend` maps a
config `type:` to its class (imported only when configured)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Protocol

from ..config import BackendConfig
from ..types import Answer, Question, Session
from ._pacing import Pacing, StoreLimiters

_CLASSES = {
    "echo": "bridge.backends.echo:EchoBackend",
    "openai": "bridge.backends.openai:OpenAIBackend",
    "nexus": "bridge.backends.nexus:NexusBackend",
    "nexusgpt": "bridge.backends.nexusgpt:NexusGPTBackend",
    "nugen": "bridge.backends.nugen:NugenBackend",
}


class Backend(Protocol):
    name: str

    async def ask(self, session: Session, question: Question) -> Answer:
        """Answer `question` in `session`; raise a `BackendError` subclass when it cannot."""

    async def resume(self, session: Session, text: str) -> Answer:
        """Answer `text`, which an earlier `ask` cut short by a crash may already have put to
        the API, without a second user turn where the API allows it (NexusGPT: find the posted
        message and poll for its answer). A backend with no server-side conversation simply asks
        again; one whose server keeps it and offers no way to look asks again and sets
        `Answer.reasked`."""

    async def probe(self) -> str:
        """The least invasive call that proves the API and credentials work; a short description."""

    async def aclose(self) -> None: ...


class StreamingBackend(Backend, Protocol):
    """A backend that can show its answer as it is written. `streaming` says whether it is
    configured to (openai `stream: true`); the router only calls `stream` then."""

    streaming: bool
    # Asking it again adds no second turn to a conversation a server keeps (the bridge keeps
    # the history): a stream a crash cut short may be asked for again.
    stateless: bool

    def stream(self, session: Session, text: str) -> AsyncIterator[str | Answer]:
        """Text increments as the API produces them, then exactly one `Answer` (the whole text,
        usage, state) when it finished; raise a `BackendError` when it cannot go on."""


def can_stream(backend: Backend) -> bool:
    return bool(getattr(backend, "streaming", False)) and hasattr(backend, "stream")


def build_backend(name: str, config: BackendConfig, *, pacing: Pacing | None = None) -> Backend:
    """`pacing`: the store's shared rate limits (Redis), for the APIs that limit per key
    (NexusGPT); without it those limits are kept per process."""
    module_name, _, class_name = _CLASSES[config.type].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if pacing is not None and config.type == "nexusgpt":
        return cls(name, config, StoreLimiters(pacing))
    return cls(name, config)


__all__ = ["Backend", "StreamingBackend", "build_backend", "can_stream"]
