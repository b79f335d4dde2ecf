"""The whole config file: its sections, and the checks that span several of them."""

from __future__ import annotations

from pydantic import model_validator

from ._base import PathError, Strict
from .access import AccessSettings, Route
from .backends import BackendConfig
from .core import BridgeSettings, HttpSettings
from .discord import DiscordAdapter
from .options import check_models, options_for
from .slack import SlackAdapter
from .telegram import TelegramAdapter


class Adapters(Strict):
    telegram: TelegramAdapter | None = None
    discord: DiscordAdapter | None = None
    slack: SlackAdapter | None = None

    def enabled(self) -> dict[str, Strict]:
        found = {"telegram": self.telegram, "discord": self.discord, "slack": self.slack}
        return {name: cfg for name, cfg in found.items() if cfg is not None and cfg.enabled}


class Config(Strict):
    bridge: BridgeSettings = BridgeSettings()
    backends: dict[str, BackendConfig] = {}
    routes: list[Route] = []
    access: AccessSettings = AccessSettings()
    adapters: Adapters = Adapters()
    http: HttpSettings = HttpSettings()

    @model_validator(mode="after")
    def _names_resolve(self) -> Config:
        names = set(self.backends)
        for i, route in enumerate(self.routes):
            if route.backend not in names:
                raise PathError(f"routes.{i}.backend", f"no backend named {route.backend!r}")
            options_for(f"routes.{i}.options", route.options, self.backends[route.backend])
            check_models(f"routes.{i}.models", route.models, self.backends[route.backend])
        default = self.bridge.default_backend
        if default is not None and default not in names:
            raise PathError("bridge.default_backend", f"no backend named {default!r}")
        if default is None and len(names) > 1:
            raise PathError(
                "bridge.default_backend", "required when more than one backend is configured"
            )
        for name in self.access.budgets.backends:
            if name not in names:
                raise PathError(f"access.budgets.backends.{name}", f"no backend named {name!r}")
        if not self.http.enabled:
            for name, cfg in self.adapters.enabled().items():
                if getattr(cfg, "mode", None) in ("webhook", "http"):
                    why = f"must be true: adapters.{name} receives its events over HTTP"
                    raise PathError("http.enabled", why)
        return self

    def default_backend(self) -> str | None:
        return self.bridge.default_backend or next(iter(self.backends), None)
