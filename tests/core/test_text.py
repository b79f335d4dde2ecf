"""Formatting: <think> stripping, sanitizing, and splitting within limits at gentle boundaries."""

from __future__ import annotations

import re

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.loop_stall import LoopWatch
from bridge.text import CUT_NOTE, cap, clean, prepare, prepare_async, split, strip_think, utf16_len

FENCE = re.compile(r"^[ \t]{0,3}```", re.MULTILINE)


def test_think_blocks_are_removed():
    assert strip_think("<think>plan\nmore</think>Answer") == "Answer"
    assert strip_think("a<THINK>x</THINK>b<think>y</think>c") == "abc"
    assert strip_think("<think>never finished") == ""
    assert strip_think("reasoning without opener</think>The answer") == "The answer"


def test_clean_removes_controls_and_keeps_newlines_and_tabs():
    assert clean("  a\x00b\r\nc\td\x07  ") == "ab\nc\td"


def test_short_text_is_one_part():
    assert split("hello", 100) == ["hello"]


def test_prefers_paragraph_then_line_then_sentence():
    para = "First paragraph here.\n\nSecond paragraph that is longer than the rest."
    assert split(para, 50) == [
        "First paragraph here.",
        "Second paragraph that is longer than the rest.",
    ]
    lines = "line one is here\nline two is here\nline three"
    assert split(lines, 36) == ["line one is here\nline two is here", "line three"]
    sentences = "One sentence here. Another one follows. And a third."
    assert split(sentences, 42) == ["One sentence here. Another one follows.", "And a third."]


def test_a_cut_inside_a_fence_closes_and_reopens_it():
    code = "\n".join(f"print({i})" for i in range(40))
    text = f"Here is code:\n\n```python\n{code}\n```\n\nDone."
    parts = split(text, 120)
    assert len(parts) > 2
    for part in parts:
        assert len(FENCE.findall(part)) % 2 == 0, part
        assert len(part) <= 120
    assert parts[1].startswith("```python\n")
    body = "".join(parts)
    assert all(f"print({i})" in body for i in range(40))


def test_telegram_counts_utf16_and_never_splits_an_emoji():
    text = "👍🏽" * 3000  # one grapheme: two code points, four UTF-16 units
    parts = split(text, 4096, utf16_len)
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert "".join(parts) == text
    assert all(regex.fullmatch(r"(👍🏽)+", p) for p in parts)


def _no_space(text: str) -> str:
    return "".join(text.split())


prose = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80),
        st.sampled_from(["\n\n", "\n", ". ", "👨‍👩‍👧", "🇫🇷", "e\u0301", "  ", "word "]),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(prose.filter(lambda t: "```" not in t), st.integers(16, 300), st.booleans())
def test_split_prose_properties(text, limit, utf16):
    measure = utf16_len if utf16 else len
    parts = split(text, limit, measure)
    assert all(measure(p) <= limit and p.strip() for p in parts)
    assert _no_space("".join(parts)) == _no_space(text)  # nothing lost, nothing invented
    # Each part is the next stretch of the original, cut only between graphemes.
    boundaries = {0} | {m.end() for m in regex.finditer(r"\X", text)}
    position = 0
    for part in parts:
        start = text.find(part, position)
        assert start >= 0
        assert start in boundaries and start + len(part) in boundaries
        position = start + len(part)


code_lines = st.lists(
    st.sampled_from(["x = 1", "    indented()", "", "# comment", "y = 'a' * 40", "é👍"]),
    max_size=40,
).map("\n".join)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(prose.filter(lambda t: "```" not in t), code_lines), max_size=4),
    st.integers(40, 300),
)
def test_split_keeps_every_part_fenced_properly(blocks, limit):
    text = "".join(f"{words}\n```python\n{code}\n```\n" for words, code in blocks)
    parts = split(text, limit)
    assert all(len(p) <= limit for p in parts)
    for part in parts:
        assert len(FENCE.findall(part)) % 2 == 0, part
    strip_fences = lambda t: _no_space(FENCE.sub("", t).replace("python", ""))  # noqa: E731
    assert strip_fences("\n".join(parts)) == strip_fences(text)


# ------------------------------------------------------------------------------ answer size

PARAGRAPH = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12 + "\n\n"
TEN_MB = PARAGRAPH * (10_000_000 // len(PARAGRAPH))
NOTE = CUT_NOTE.format(limit=20000)


def test_a_long_answer_is_cut_at_a_paragraph_with_a_note():
    parts = prepare(TEN_MB, 4096, utf16_len, max_chars=20000)
    assert len(parts) <= 6  # 20,000 characters in 4,096-unit messages, and the note
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert parts[-1].endswith(NOTE)
    body = "\n\n".join(parts)
    assert len(body) <= 20000 + len(NOTE) + 20
    assert body.replace(NOTE, "").rstrip().endswith("elit.")  # a whole paragraph, not a word


def test_a_cut_inside_code_closes_its_fence_and_short_answers_are_untouched():
    code = "```python\n" + "x = 1\n" * 5000 + "```\n"
    text, cut = cap(code, 1000)
    assert cut and len(text) <= 1000 and text.endswith("\n```")
    assert len(FENCE.findall(text)) == 2
    assert prepare("a short answer", 4096) == ["a short answer"]
    assert prepare("<think>only thinking</think>", 4096) == []


async def test_preparing_ten_megabytes_never_stalls_the_loop():
    """Splitting 10 MB on the loop held it for ~20 s; now each step is bounded."""
    async with LoopWatch() as watch:
        parts = await prepare_async(TEN_MB + "```\nopen fence", 4096, utf16_len, 20000)
    assert parts[-1].endswith(NOTE) and len(parts) <= 6
    # Generous: measured ~10 ms here (the longest single pass in C over 10 MB); the machine is
    # shared, so only a stall far beyond that fails.
    assert watch.longest < 0.15, f"the loop stalled for {watch.longest * 1000:.0f} ms"


def test_a_space_joined_to_a_combining_mark_is_not_a_place_to_cut():
    # " ั" (a space and a Thai vowel mark) is one grapheme: the cut falls elsewhere.
    text = "0000000 \u0e3100000000"
    assert split(text, 16) == ["0000000 \u0e310000000", "0"]
