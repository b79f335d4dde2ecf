"""The echo backend: no network, answers `[{session_key}] {text}`. For trying the bridge out."""

from __future__ import annotations

from ..config import EchoBackend as EchoConfig
from ..types import Answer, Question, Session


class EchoBackend:
    def __init__(self, name: str, config: EchoConfig) -> None:
        self.name = name

    async def ask(self, session: Session, question: Question) -> Answer:
        return Answer(text=f"[{session.key}] {question.text}")

    async def resume(self, session: Session, question: Question) -> Answer:
        return await self.ask(session, question)  # nothing remembers the first ask

    async def probe(self) -> str:
        return "echo (no network)"

    async def aclose(self) -> None:
        return None
