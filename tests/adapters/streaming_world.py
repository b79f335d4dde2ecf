"""What the streamed-answer scenes share: a fake model writing a few characters at a time, and a
config where one user's answers stream and everyone else's come whole from the same server."""

from __future__ import annotations

from typing import Any

from bridge.config import Config
from tests.conftest import make_config
from tests.fakes.openai_api import FakeOpenAI

MARKDOWN = (
    "## Plan\n\nHere is **bold**, `a < b` and a [link](https://example.org).\n\n"
    "```python\nprint('hello')\n```\n\nThat is all, thank you for asking."
)


def writing_model(reply: str = MARKDOWN) -> FakeOpenAI:
    """The fake OpenAI server answering `reply`, 6 characters every 20 ms when streaming."""
    server = FakeOpenAI(lambda body, headers: reply)
    server.stream.chunk = 6
    server.stream.delay = 0.02
    return server


def routed_config(
    llm: FakeOpenAI, platform: str, section: dict[str, Any], streamer: str, **streaming: Any
) -> Config:
    """`streamer`'s answers go to a `stream: true` backend, the rest to the same server whole."""
    backend = {"type": "openai", "base_url": llm.base_url, "max_retries": 0, "timeout": 30}
    settings = {"min_chars": 10, "min_interval": 0.05, "idle_timeout": 5, **streaming}
    return make_config({
        "backends": {"live": {**backend, "stream": True}, "whole": backend},
        "routes": [{"user": [streamer], "backend": "live"}],
        "bridge": {"default_backend": "whole"},
        "adapters": {platform: {**section, "streaming": settings}},
    })  # fmt: skip
