"""botbridge: chat platforms (Telegram, Discord, Slack) to LLM APIs.

The public surface is the message types, the session-key function and the errors; the rest is
reached through the `botbridge` command.
"""

from .errors import BackendError, BridgeError, ConfigError
from .session import key_for, session_key
from .types import Addressed, Answer, ChatKind, Inbound, Limits, Outbound, Session, Usage

__version__ = "0.1.0"

__all__ = [
    "Addressed",
    "Answer",
    "BackendError",
    "BridgeError",
    "ChatKind",
    "ConfigError",
    "Inbound",
    "Limits",
    "Outbound",
    "Session",
    "Usage",
    "key_for",
    "session_key",
]
