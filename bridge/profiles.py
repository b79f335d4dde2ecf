"""What a message is asked with: the backend its route names, the route's options (persona and
model), the models `/model` may choose there, and what that backend can do (see pictures, keep the
conversation's history).

Built once from the config (whose loading already checked every option against its backend's
type); the router and the commands ask `Profiles.for_inbound`. First matching route wins; a message
no route matches gets the default backend with its own settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .access import matches
from .config import BackendConfig, Config, Route
from .config.options import MODEL_OPTION, options_for
from .types import Inbound, Session


@dataclass(frozen=True, slots=True)
class Profile:
    backend: str
    route: str = "default"  # the route's label in metrics: its `name`, or `routes.{i}`
    options: Mapping[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = ()  # what /model may choose; empty: the model is fixed here
    model_option: str | None = None  # the option a chosen model sets (`model`, `model_llm`)
    default_model: str | None = None  # the route's or the backend's; None: the server's choice
    vision: bool = False
    keeps_history: bool = False  # the bridge or the server keeps the conversation

    def model(self, session: Session) -> str | None:
        """The model this session uses: its /model choice while that is still offered here."""
        chosen = session.chosen_model
        return chosen if chosen is not None and chosen in self.models else self.default_model

    def options_for(self, session: Session) -> Mapping[str, Any]:
        """The route's options with the session's chosen model in place."""
        model = self.model(session)
        if self.model_option is None or model is None or model == self.default_model:
            return self.options
        return {**self.options, self.model_option: model}

    def sees(self, inbound: Inbound) -> bool:
        return self.vision and inbound.picture is not None


class Profiles:
    def __init__(
        self,
        routes: Sequence[Route],
        backends: Mapping[str, BackendConfig],
        default_backend: str | None,
    ) -> None:
        self._routes = [
            (route, _profile(route.backend, backends[route.backend], route, i))
            for i, route in enumerate(routes)
        ]
        self._default = (
            _profile(default_backend, backends[default_backend]) if default_backend else None
        )

    @classmethod
    def from_config(cls, config: Config) -> Profiles:
        return cls(config.routes, config.backends, config.default_backend())

    def for_inbound(self, inbound: Inbound) -> Profile:
        for route, profile in self._routes:
            if matches(route, inbound):
                return profile
        if self._default is None:
            raise LookupError("no backend configured")
        return self._default


def _profile(
    name: str, config: BackendConfig, route: Route | None = None, index: int = 0
) -> Profile:
    path = f"routes.{index}"
    options = options_for(f"{path}.options", route.options, config) if route else {}
    model_option = MODEL_OPTION.get(config.type)
    models = route.models if route is not None and route.models is not None else None
    if models is None:
        models = getattr(config, "models", None) or []
    default_model = None
    if model_option is not None:
        default_model = options.get(model_option, getattr(config, model_option, None))
    return Profile(
        backend=name,
        route=(route.name or path) if route is not None else "default",
        options=MappingProxyType(options),  # shared by every request: read-only
        models=tuple(models),
        model_option=model_option,
        default_model=default_model,
        vision=bool(getattr(config, "vision", False)),
        keeps_history=keeps_history(config),
    )


def keeps_history(config: BackendConfig) -> bool:
    """Whether the backend already has the conversation so far (kept by the bridge or by the
    server), so a reply to the bot's own message need not repeat it."""
    if config.type == "openai":
        return config.session != "bridge" or config.history.max_messages > 0
    if config.type == "nexus":
        return config.history == "fold" and config.history_turns > 0
    return config.type in ("nexusgpt", "nugen")
