"""Text in and out: what a person sent made safe, a backend's answer made postable.

`clean_input` repairs what arrives (lone surrogates, control characters) before anything else sees
it. `clean` strips `<think>` blocks and characters no chat can show; `split` cuts a long answer into
parts within a limit, at the gentlest boundary there is (paragraph, line, sentence, word, grapheme),
closing and reopening a ``` fence that a cut falls inside. Limits are counted in code points or,
for Telegram, in UTF-16 code units. `prepare` does all of it to an answer, first cutting one
longer than `max_chars` (with a note saying so); `prepare_async` runs it off the event loop when
the text is long.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable

import regex

from .types import Inbound

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"^\s*<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# C0/C1 controls except tab and newline, and lone surrogates (from a bad decode upstream).
_UNSHOWABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # after \r became \n
_FENCE = re.compile(r"^[ \t]{0,3}```")
_GRAPHEME = regex.compile(r"\X")
# What attaches to the character before it (a combining mark, a zero-width joiner, a spacing mark).
_JOINS_BEFORE = regex.compile(
    r"[\p{Grapheme_Cluster_Break=Extend}\p{Grapheme_Cluster_Break=ZWJ}"
    r"\p{Grapheme_Cluster_Break=SpacingMark}]"
)
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


def clean_input(text: str) -> str:
    """A person's message as every library downstream can take it: surrogates that a client split
    apart (JSON may carry `"\\ud83d"` alone) joined where they pair and U+FFFD where they do not
    (an HTTP client cannot encode them as UTF-8); line ends as `\\n`; other control characters
    than newline and tab removed. Linear, in C: a few ms for a megabyte."""
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


# Beyond this many characters an inbound text is cleaned in a thread, off the event loop.
_CLEAN_ON_LOOP = 65536


async def cleaned(inbound: Inbound) -> Inbound:
    """The message with its text (and the sender's name) repaired by `clean_input`. A usual
    message is cleaned at once, without yielding: arrival order is kept."""
    text, name = inbound.text, inbound.sender_name
    if len(text) > _CLEAN_ON_LOOP:
        text = await asyncio.to_thread(clean_input, text)
    else:
        text = clean_input(text)
    name = clean_input(name)
    if text == inbound.text and name == inbound.sender_name:
        return inbound
    return dataclasses.replace(inbound, text=text, sender_name=name)


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
    window (a paragraph a third of the way in beats a word at the very end), else the window end.
    A space followed by a combining mark is one grapheme with it: never a place to cut."""
    window = text[:end]
    for pattern, share in (("\n\n", 0.3), ("\n", 0.4)):
        at = window.rfind(pattern, int(end * share))
        if at > 0:
            return at + len(pattern)
    sentences = [m.end() for m in _SENTENCE_END.finditer(window, end // 2)]
    sentences = [at for at in sentences if _between_graphemes(text, at)]
    if sentences:
        return sentences[-1]
    spaces = [m.end() for m in re.finditer(r"\s", window)]
    spaces = [at for at in spaces if at > 0 and _between_graphemes(text, at)]
    if spaces:
        return spaces[-1]
    return end


def _between_graphemes(text: str, at: int) -> bool:
    """Whether `at` (just after a space) is a grapheme boundary: no mark joins what follows."""
    return at >= len(text) or _JOINS_BEFORE.match(text, at) is None


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


# ------------------------------------------------------------------------------------ preparing

CUT_NOTE = "(The answer was cut here: it was longer than {limit:,} characters.)"
# Shorter texts are prepared on the event loop (well under a millisecond); longer ones in a
# thread, so that the loop keeps serving while a long answer is split (the splitting is Python
# code that yields the GIL every few ms; each C step on the text is one linear pass).
_PREPARE_ON_LOOP = 2000


def cap(text: str, max_chars: int) -> tuple[str, bool]:
    """`text` cut to at most `max_chars` characters at the gentlest boundary `split` would use
    (a fence left open is closed), and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    end = _window(text, max_chars - 4, len)  # room to close a fence
    head = text[: _cut(text, end) if end else max_chars - 4].rstrip()
    if _open_fence(head, None):
        head += "\n```"
    return head, True


def prepare(text: str, limit: int, measure: Measure = len, max_chars: int = 20000) -> list[str]:
    """An answer as the parts to post: `<think>` and unshowable characters removed, cut beyond
    `max_chars` with `CUT_NOTE` at the end, split within `limit`. Empty when nothing is left.

    Linear in the length: before anything else looks at every character, the text is cut to a
    bound (twice the cap: cleaning only removes characters), so a 10 MB answer costs two passes
    in C, not a split of 10 MB."""
    text = strip_think(text)
    cut = len(text) > 2 * max_chars + 1024
    if cut:
        text = text[: 2 * max_chars + 1024]
    text = sanitize(text).strip()
    text, capped = cap(text, max_chars)
    if not text:
        return []
    parts = split(text, limit, measure)
    if cut or capped:
        note = CUT_NOTE.format(limit=max_chars)
        if measure(parts[-1]) + measure(note) + 2 <= limit:
            parts[-1] = f"{parts[-1]}\n\n{note}"
        else:
            parts.append(note)
    return parts


async def prepare_async(
    text: str, limit: int, measure: Measure = len, max_chars: int = 20000
) -> list[str]:
    """`prepare`, in a worker thread when the text is long enough to hold up the event loop."""
    if len(text) <= _PREPARE_ON_LOOP:
        return prepare(text, limit, measure, max_chars)
    return await asyncio.to_thread(prepare, text, limit, measure, max_chars)
