"""Backends: the only code that speaks an LLM API. One module per API; `build_backend` maps a
config `type:` to its class (imported only when configured)."""

from __future__ import annotations

import importlib
from typing import Protocol

from ..config import BackendConfig
from ..types import Answer, Session
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

    async def ask(self, session: Session, text: str) -> Answer:
        """Answer `text` in `session`; raise a `BackendError` subclass when it cannot."""

    async def probe(self) -> str:
        """The least invasive call that proves the API and credentials work; a short description."""

    async def aclose(self) -> None: ...


def build_backend(name: str, config: BackendConfig, *, pacing: Pacing | None = None) -> Backend:
    """`pacing`: the store's shared rate limits (Redis), for the APIs that limit per key
    (NexusGPT); without it those limits are kept per process."""
    module_name, _, class_name = _CLASSES[config.type].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if pacing is not None and config.type == "nexusgpt":
        return cls(name, config, StoreLimiters(pacing))
    return cls(name, config)


__all__ = ["Backend", "build_backend"]
