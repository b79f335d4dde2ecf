"""The replied-to message as context: what a backend is told about the message a question answers.

`[In reply to Bob: …]` goes before the question, the quoted text cut at a clean boundary to
`bridge.quote_max_chars`. A reply to the bot's own message, or to the sender's own earlier
question to the bot, is not repeated to a backend that already keeps the conversation's history:
it has that turn already.
"""

from __future__ import annotations

from .text import sanitize, split
from .types import Quote

ELLIPSIS = " …"


def with_quote(text: str, quote: Quote | None, *, max_chars: int, keeps_history: bool) -> str:
    """`text` with the quoted message marked before it; `text` alone when there is nothing the
    backend does not already know."""
    if quote is None or ((quote.from_bot or quote.own_question) and keeps_history):
        return text
    quoted = capped(sanitize(quote.text).strip(), max_chars)
    if not quoted:
        return text
    who = "you" if quote.from_bot else (quote.author.strip() or "someone")
    marked = f"[In reply to {who}: {quoted}]"
    return f"{marked}\n{text}" if text else marked


def capped(text: str, max_chars: int) -> str:
    """At most `max_chars` characters, cut at the gentlest boundary (paragraph, line, sentence,
    word) and marked with an ellipsis when cut."""
    if len(text) <= max_chars:
        return text
    head = split(text, max_chars - len(ELLIPSIS))[0]
    if head.endswith("\n```"):  # split closed a code fence it cut into: a quote needs no fence
        head = head[: -len("\n```")]
    return head.rstrip() + ELLIPSIS
