"""What a backend is asked for one message: the text with the replied-to message as context, the
route's options with the session's chosen model, and the picture, downloaded and checked, for a
backend that can see. The router asks `Questions.build` just before it calls the backend.
"""

from __future__ import annotations

from .config import BridgeSettings
from .context import with_quote
from .pictures import PictureSource, load
from .profiles import Profile
from .types import Image, Inbound, Question, Session


class Questions:
    def __init__(self, settings: BridgeSettings, pictures: PictureSource) -> None:
        self._settings = settings
        self._pictures = pictures

    async def build(
        self, inbound: Inbound, text: str, profile: Profile, session: Session
    ) -> Question:
        """Raises a `PictureError` (its `reply` is for the user) when the picture cannot go."""
        settings = self._settings
        if settings.quote_context:
            text = with_quote(
                text,
                inbound.quote,
                max_chars=settings.quote_max_chars,
                keeps_history=profile.keeps_history,
            )
        images: tuple[Image, ...] = ()
        if inbound.picture is not None and profile.sees(inbound):
            picture = await load(
                self._pictures, inbound.platform, inbound.picture, settings.max_image_bytes
            )
            images = (picture,)
        return Question(text, profile.options_for(session), images)
