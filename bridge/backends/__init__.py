"""Backends: the only code that speaks an LLM API. One module per API; `build_backend` maps a
config `type:` to its class (imported only when configured)."""

from __future__ import annotations

import importlib
from typing import Protocol

from ..config import BackendConfig
from ..types import Answer, Question, Session

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

    async def probe(self) -> str:
        """The least invasive call that proves the API and credentials work; a short description."""

    async def aclose(self) -> None: ...


def build_backend(name: str, config: BackendConfig) -> Backend:
    module_name, _, class_name = _CLASSES[config.type].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(name, config)


__all__ = ["Backend", "build_backend"]
