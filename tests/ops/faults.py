"""What the `faults` suite shares: its sizes, its random source, and how it reads what people saw.

CI runs the suite with small counts; `BOTBRIDGE_FAULTS_FULL=1` runs the issue's full counts
(1,000 redeliveries, 100 kills per platform). `BOTBRIDGE_FAULTS_SEED=n` replays one run. Each
test prints a `faults:` line with its figures (`pytest -m faults -s` shows them).

Answers are built so that every part says which question and which part it is ("[s3-m7 part 2]"),
so counting what reached a platform needs no guessing: a part seen twice is a repeat, a question
with no part 1 was not answered, part 1s out of question order break the session's order.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FULL = os.environ.get("BOTBRIDGE_FAULTS_FULL") == "1"
SEED = int(os.environ.get("BOTBRIDGE_FAULTS_SEED") or random.SystemRandom().randrange(10**6))

REDELIVERIES = 1000 if FULL else 200  # in all, over the three platforms
KILLS = 100 if FULL else 7  # per platform
SESSIONS = 20
TIMEOUT = 3600 if FULL else 300  # seconds per test (pytest-timeout)

_MARK = re.compile(r"\[(s\d+-m\d+) part (\d+)\]")


def rng(name: str) -> random.Random:
    """A random source per test, reproducible from the printed seed."""
    return random.Random(f"{SEED}:{name}")


def question(session: int, number: int) -> str:
    return f"s{session}-m{number}"


def two_part_answer(limit: int):
    """A NexusGPT fake `reply` giving each question an answer in two parts of the platform's
    `limit`, each part opening with its mark."""
    filler = " ".join(["words"] * (limit // 6 - 12))

    def reply(content: str, earlier: list[str]) -> str:
        name = content.split()[-1]
        return f"[{name} part 1] {filler}\n\n[{name} part 2] {filler}"

    return reply


@dataclass
class Seen:
    """What reached one platform, read from the texts it was sent, in order."""

    parts: Counter[tuple[str, int]] = field(default_factory=Counter)
    order: dict[str, list[str]] = field(default_factory=dict)  # session → questions, first seen

    @classmethod
    def of(cls, texts: Iterable[str]) -> Seen:
        seen = cls()
        for text in texts:
            for name, part in _MARK.findall(text):
                seen.parts[(name, int(part))] += 1
                if int(part) == 1 and seen.parts[(name, 1)] == 1:
                    seen.order.setdefault(name.split("-")[0], []).append(name)
        return seen

    def answered(self, name: str) -> bool:
        return self.parts[(name, 1)] >= 1 and self.parts[(name, 2)] >= 1

    @property
    def repeated(self) -> int:
        return sum(count - 1 for count in self.parts.values() if count > 1)

    def out_of_order(self, asked: dict[str, Sequence[str]]) -> list[str]:
        """Sessions whose answers came in another order than their questions were asked."""
        bad = []
        for session, names in self.order.items():
            wanted = [n for n in asked.get(session, ()) if n in names]
            if names != wanted:
                bad.append(session)
        return bad


def report(name: str, **figures: object) -> str:
    line = f"faults: {name} seed={SEED} " + " ".join(f"{k}={v}" for k, v in figures.items())
    print(line)
    return line
