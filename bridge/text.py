"""Turning a backend's answer into what a platform can post.

`clean` strips `<think>` blocks and characters no chat can show; `split` cuts a long answer into
parts within a limit, at the gentlest boundary there is (paragraph, line, sentence, word, grapheme),
closing and reopening a ``` fence that a cut falls inside. Limits are counted in code points or,
for Telegram, in UTF-16 code units.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import regex

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"^\s*<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# C0/C1 controls except tab and newline, and lone surrogates (from a bad decode upstream).
_UNSHOWABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_FENCE = re.compile(r"^[ \t]{0,3}```")
_GRAPHEME = regex.compile(r"\X")
_SENTENCE_END = re.compile(r"[.!?…。！？][\"')\]]*\s")

Measure = Callable[[str], int]


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def strip_think(text: str) -> str:
    text = _THINK_BLOCK.sub("", text)
    if _THINK_OPEN.match(text):
        # An unterminated block at the start: the model never finished thinking.
        return ""
    close = _THINK_CLOSE.search(text)
    if close and "<think>" not in text[: close.start()].lower():
        # Some servers drop the opening tag and send "reasoning…</think>answer".
        text = text[close.end() :]
    return text


def sanitize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSHOWABLE.sub("", text)


def clean(text: str) -> str:
    return sanitize(strip_think(text)).strip()


# ------------------------------------------------------------------------------------ splitting


def _open_fence(text: str, opener: str | None) -> str | None:
    """The fence opener line still open at the end of `text`, given the one open at its start."""
    for line in text.split("\n"):
        if _FENCE.match(line):
            opener = None if opener is not None else line.strip()
    return opener


def _window(text: str, budget: int, measure: Measure) -> int:
    """The longest prefix of whole graphemes that fits in `budget`; 0 if not even one does."""
    end = 0
    used = 0
    for match in _GRAPHEME.finditer(text):
        used += measure(match.group())
        if used > budget:
            break
        end = match.end()
    return end


def _cut(text: str, end: int) -> int:
    """Where to cut `text[:end]`: the gentlest boundary that still fills a fair share of the
    window (a paragraph a third of the way in beats a word at the very end), else the window end."""
    window = text[:end]
    for pattern, share in (("\n\n", 0.3), ("\n", 0.4)):
        at = window.rfind(pattern, int(end * share))
        if at > 0:
            return at + len(pattern)
    sentences = [m.end() for m in _SENTENCE_END.finditer(window, end // 2)]
    if sentences:
        return sentences[-1]
    spaces = [m.end() for m in re.finditer(r"\s", window)]
    if spaces and spaces[-1] > 0:
        return spaces[-1]
    return end


def _take(
    rest: str, budget: int, opener: str | None, measure: Measure
) -> tuple[str, str, str | None]:
    """The next chunk of `rest` within `budget`, what remains, and the fence left open."""
    end = _window(rest, budget, measure)
    cut = _cut(rest, end) if end else 1
    chunk = rest[:cut].rstrip()
    return chunk, rest[cut:], _open_fence(chunk, opener)


def take_part(
    rest: str, limit: int, measure: Measure = len, opener: str | None = None
) -> tuple[str, int, str | None] | None:
    """The next part of `rest` (stripped at its start, with `opener` the fence a previous part
    left open), or None when `rest` fits whole as the last part. Returns the part, how many
    characters of `rest` it consumed, and the fence it leaves open.

    A part this returns depends only on the text it consumed plus one grapheme after it, so a
    part taken from a prefix of an answer is exactly the part `split` takes from the whole
    answer: streaming seals parts with it as the text grows."""
    if limit < 16:
        raise ValueError("limit too small to split sensibly")
    head = f"{opener}\n" if opener else ""
    if measure(head) + measure(rest) <= limit:
        return None
    closing = "\n```"
    if measure(head) > limit // 4:  # an absurdly long opener line: give up reopening it
        head, opener = "", None
    chunk, rest_after, still_open = _take(rest, limit - measure(head), opener, measure)
    body = head + chunk
    if still_open and measure(body + closing) > limit:
        # Cut inside a fence: cut again leaving room to close it.
        budget = limit - measure(head) - measure(closing)
        chunk, rest_after, still_open = _take(rest, budget, opener, measure)
        body = head + chunk
    if still_open:
        body += closing
    return body, len(rest) - len(rest_after), still_open


def lstrip_part(rest: str, opener: str | None) -> str:
    """Where the next part starts: blank lines dropped, indentation kept inside a fence."""
    return rest.lstrip("\n") if opener else rest.lstrip()


def split(text: str, limit: int, measure: Measure = len) -> list[str]:
    """Parts of `text`, each with measure() <= limit, in order, fences balanced in each part."""
    if limit < 16:
        raise ValueError("limit too small to split sensibly")
    parts: list[str] = []
    rest = text.strip()
    opener: str | None = None  # a fence the previous part closed, to reopen here
    while rest:
        taken = take_part(rest, limit, measure, opener)
        if taken is None:
            parts.append((f"{opener}\n" if opener else "") + rest)
            break
        body, used, opener = taken
        if body.strip():
            parts.append(body)
        rest = lstrip_part(rest[used:], opener)
    return parts
