"""The `streaming:` block every adapter section shares: where answers are shown while they are
written, and how often the growing message may change."""

from __future__ import annotations

from pydantic import Field

from ._base import Strict


class StreamingSettings(Strict):
    dms: bool = Field(True, description="stream answers in direct messages")
    groups: bool = Field(
        False, description="stream answers in groups and channels too (edits are noisy there)"
    )
    min_chars: int = Field(
        40, ge=1, description="new characters an update waits for (or min_interval, if fewer)"
    )
    min_interval: float = Field(
        1.5, ge=0.05, le=60, description="seconds between two updates of one answer"
    )
    idle_timeout: float = Field(
        60.0, gt=0, description="seconds without new text before the answer ends with what "
        "arrived plus the apology",
    )
    record_interval: float = Field(
        3.0, gt=0, le=300, description="seconds between two journal records of a growing answer's "
        "text (a crash loses at most this much of what was shown; finished parts and a new "
        "message are recorded at once)",
    )
