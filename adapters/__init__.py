"""Platform adapters: one module per platform, the only code that imports a platform library.

`build_adapter` maps a config section name to its class, importing the module only when that
platform is enabled, so an operator without Discord never loads discord.py.
"""

from __future__ import annotations

import importlib
from typing import Any

from bridge.adapter import Adapter
from bridge.metrics import Metrics

_CLASSES = {
    "telegram": "adapters.telegram:TelegramAdapter",
    "discord": "adapters.discord:DiscordAdapter",
    "slack": "adapters.slack:SlackAdapter",
}


def build_adapter(platform: str, config: Any, metrics: Metrics, **extras: Any) -> Adapter:
    """`extras` go to the adapter's constructor (the Telegram poller's `election`)."""
    module_name, _, class_name = _CLASSES[platform].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(config, metrics, **extras)


__all__ = ["build_adapter"]
