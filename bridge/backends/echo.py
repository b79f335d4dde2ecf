"""The echo backend: no network, answers `[{session_key}] {text}`. For trying the bridge out."""

from __future__ import annotations

from ..config import EchoBackend as EchoConfig
from ..types import Answer, Session


class EchoBackend:
    def __init__(self, name: str, config: EchoConfig) -> None:
        self.name = name

    async def ask(self, session: Session, text: str) -> Answer:
        return Answer(text=f"[{session.key}] {text}")

    async def resume(self, session: Session, text: str) -> Answer:
        return await self.ask(session, text)  # nothing remembers the first ask

    async def probe(self) -> str:
        return "echo (no network)"

    async def aclose(self) -> None:
        return None
