"""Markdown → Slack mrkdwn, through slackify-markdown.

slackify-markdown escapes `&`, `<` and `>` in prose but leaves code as is, where Slack would still
read `<…>` as a link or mention; code is escaped here so that `a < b` or `<div>` shows literally.
"""

from __future__ import annotations

import re

from slackify_markdown import slackify_markdown

# A fenced block, or an inline code span, in slackify's output.
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)


def _escape(code: str) -> str:
    return code.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    converted = slackify_markdown(markdown)
    return _CODE.sub(lambda m: _escape(m.group(0)), converted).strip("\n")
