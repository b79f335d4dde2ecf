"""The config file, validated: one module per section (`core`, `access`, `backends`, and one per
platform), the whole file in `file`, reading and environment substitution in `loading`.

Everything the rest of the bridge needs is re-exported here: `from bridge.config import Config`.
"""

from __future__ import annotations

from ._base import HttpUrl, PathError, Strict
from .access import (
    AccessRule,
    AccessSettings,
    Budgets,
    DailyBudget,
    IdList,
    Match,
    PlatformUser,
    RateLimit,
    Route,
)
from .backends import (
    BACKEND_TYPES,
    BackendBase,
    BackendConfig,
    EchoBackend,
    HistoryLimits,
    NexusBackend,
    NexusGPTBackend,
    NugenBackend,
    OpenAIBackend,
)
from .core import DEFAULT_APOLOGY, BridgeSettings, DeliverySettings, HttpSettings, StoreConfig
from .discord import DiscordAdapter
from .file import Adapters, Config
from .loading import embedded_default, load_config, parse_config, secret_values
from .slack import SlackAdapter
from .streaming import StreamingSettings
from .telegram import TelegramAdapter

__all__ = [
    "BACKEND_TYPES",
    "DEFAULT_APOLOGY",
    "AccessRule",
    "AccessSettings",
    "Adapters",
    "BackendBase",
    "BackendConfig",
    "BridgeSettings",
    "Budgets",
    "Config",
    "DailyBudget",
    "DeliverySettings",
    "DiscordAdapter",
    "EchoBackend",
    "HistoryLimits",
    "HttpSettings",
    "HttpUrl",
    "IdList",
    "Match",
    "NexusBackend",
    "NexusGPTBackend",
    "NugenBackend",
    "OpenAIBackend",
    "PathError",
    "PlatformUser",
    "RateLimit",
    "Route",
    "SlackAdapter",
    "StoreConfig",
    "StreamingSettings",
    "Strict",
    "TelegramAdapter",
    "embedded_default",
    "load_config",
    "parse_config",
    "secret_values",
]
