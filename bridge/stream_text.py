"""An answer's text as it grows: `<think>` blocks held back before any of them can show, and the
visible text cut into parts exactly where `text.split` would cut the whole answer.

`ThinkFilter` applies `text.strip_think`'s rules one chunk at a time (a tag split across chunks is
held until it is whole); `Sealer` says which parts of the visible text are final, so a platform
can finish one message and go on in the next without ever editing the first again.
"""

from __future__ import annotations

from .text import Measure, lstrip_part, sanitize, take_part

_OPEN = "<think>"
_CLOSE = "</think>"


def _held(text: str) -> int:
    """How many characters at the end of `text` could begin a think tag."""
    lower = text[-len(_CLOSE) :].lower()
    for size in range(min(len(lower), len(_CLOSE) - 1), 0, -1):
        tail = lower[-size:]
        if _OPEN.startswith(tail) or _CLOSE.startswith(tail):
            return size
    return 0


class ThinkFilter:
    """Feed the backend's increments; `visible` is the answer so far with every think block (and
    anything that might still turn into one) left out.

    The rules are `strip_think`'s: a `<think>…</think>` block anywhere goes; an answer that opens
    a block and never closes it shows nothing; the first `</think>` without an opening tag (a
    server that drops it) means everything before it was reasoning, so what was visible is taken
    back (`retractions` counts it) and the answer starts after the tag.
    """

    def __init__(self) -> None:
        self._shown: list[str] = []
        self._pending = ""  # raw text not yet judged: a possible partial tag
        self._inside = False
        self._orphan_seen = False
        self.retractions = 0
        self.length = 0  # characters in `visible`, kept without joining

    def feed(self, chunk: str) -> None:
        text = self._pending + chunk
        self._pending = ""
        lower = text.lower()
        pos = 0
        while pos < len(text):
            if self._inside:
                end = lower.find(_CLOSE, pos)
                if end < 0:
                    self._pending = text[len(text) - _held(text[pos:]) :]
                    return
                self._inside = False
                pos = end + len(_CLOSE)
                continue
            opened = lower.find(_OPEN, pos)
            closed = lower.find(_CLOSE, pos)
            if opened < 0 and closed < 0:
                keep = _held(text[pos:])
                self._emit(text[pos : len(text) - keep])
                self._pending = text[len(text) - keep :] if keep else ""
                return
            if opened >= 0 and (closed < 0 or opened < closed):
                self._emit(text[pos:opened])
                self._inside = True
                pos = opened + len(_OPEN)
            elif self._orphan_seen:  # strip_think only honours the first orphan tag
                self._emit(text[pos : closed + len(_CLOSE)])
                pos = closed + len(_CLOSE)
            else:
                self._orphan_seen = True
                self._shown.clear()
                self.length = 0
                self.retractions += 1
                pos = closed + len(_CLOSE)

    def finish(self) -> None:
        """The answer is complete: a held partial tag was plain text after all."""
        if not self._inside:
            self._emit(self._pending)
        self._pending = ""

    def _emit(self, text: str) -> None:
        if text:
            self._shown.append(text)
            self.length += len(text)

    @property
    def visible(self) -> str:
        """What may be shown now, cleaned like a whole answer (controls removed, newlines
        normalised); a trailing carriage return waits for the character after it."""
        text = "".join(self._shown)
        if text.endswith("\r"):
            text = text[:-1]
        # A tag can also form around a removed block ("<" + block + "think>"): never show one.
        lower = text.lower()
        cuts = [at for at in (lower.find(_OPEN), lower.find(_CLOSE)) if at >= 0]
        return sanitize(text[: min(cuts)] if cuts else text)


class Sealer:
    """Cuts a growing text into parts within `limit`. `advance` returns the parts that just became
    final and the text of the part still growing; a sealed part is exactly the part `split`
    gives for the whole answer (a part depends only on the text it consumed and one grapheme
    after it)."""

    def __init__(self, limit: int, measure: Measure = len) -> None:
        self._limit = limit
        self._measure = measure
        self._offset = 0  # where the growing part starts in the text
        self._opener: str | None = None  # the fence the last sealed part left open
        self.sealed: list[str] = []

    def advance(self, text: str) -> tuple[list[str], str]:
        new: list[str] = []
        while True:
            rest = lstrip_part(text[self._offset :], self._opener)
            lead = len(text) - self._offset - len(rest)
            # Trailing blanks are not judged yet: the whole answer's split never sees them.
            rest = rest.rstrip()
            taken = take_part(rest, self._limit, self._measure, self._opener)
            if taken is None:
                head = f"{self._opener}\n" if self._opener and rest else ""
                return new, head + rest
            body, used, self._opener = taken
            self._offset += lead + used
            if body.strip():
                new.append(body)
                self.sealed.append(body)
