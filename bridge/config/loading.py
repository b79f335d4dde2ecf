"""Reading the file: YAML, `${VAR}` / `${VAR:-default}` from the environment, then validation.

Every mistake becomes a `ConfigError` naming its path in the file (`backends.main.base_url: field
required`), raised before anything touches the network. Secrets are `SecretStr`: their repr is
masked, and `secret_values()` lists them for the log redactor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from ..errors import ConfigError
from ._base import PathError
from .backends import BACKEND_TYPES
from .file import Config

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(value: Any, path: str, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}.{i}", env) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigError(path, f"environment variable {name} is not set")

    return _VAR.sub(replace, value)


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    loc = [str(part) for part in error["loc"]]
    # A tagged union puts the tag in the path (backends.main.openai.base_url): drop it.
    if len(loc) > 2 and loc[0] == "backends" and loc[2] in BACKEND_TYPES:
        del loc[2]
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        message = "field required"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "union_tag_invalid":
        loc.append("type")
        message = f"unknown type {error['input'].get('type')!r}; one of {', '.join(BACKEND_TYPES)}"
    elif kind == "union_tag_not_found":
        loc.append("type")
        message = f"field required (one of {', '.join(BACKEND_TYPES)})"
    elif kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, PathError):
            return cause.path, cause.message
        message = message.removeprefix("Value error, ")
        # Validators of one section name a sub-key first ("webhook_url: required …").
        head, sep, tail = message.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+", head):
            loc.append(head)
            message = tail
    elif kind == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        message = "must be an http:// or https:// URL" if "https?" in pattern else (
            f"must match {pattern}"
        )
    else:
        message = message[:1].lower() + message[1:]
    return ".".join(loc), message


def parse_config(raw: Any, env: dict[str, str] | None = None) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("", "the config file must be a mapping of sections")
    data = _substitute(raw, "", dict(os.environ) if env is None else env)
    # A section left empty (`adapters:` with everything below commented out) is unset; elsewhere
    # null is a value (`denied_reply: null` means no reply).
    data = {k: v for k, v in data.items() if v is not None}
    if isinstance(data.get("adapters"), dict):
        data["adapters"] = {k: v for k, v in data["adapters"].items() if v is not None}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        path, message = _describe(exc.errors()[0])
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(path, message) from None


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    text = _decode(path, data)
    try:
        _no_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}") from None
    return parse_config(raw, env)


_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def _decode(path: str | os.PathLike[str], data: bytes) -> str:
    """The file as text: UTF-8 (a BOM is fine); anything else is named, never a traceback."""
    if data.startswith(_UTF16_32_BOMS) or b"\x00" in data:
        raise ConfigError("", f"{path} is UTF-16 or binary, not UTF-8 text: save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            "",
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}): "
            "save it as UTF-8",
        ) from None


def _no_duplicate_keys(
    node: yaml.Node | None, path: str = "", seen: set[int] | None = None
) -> None:
    """YAML lets a later key silently replace an earlier one (`bridge:` twice: the first is
    gone); name the key and both lines instead."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias repeats a node: checked once
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            here = f"{path}.{key.value}" if path else str(key.value)
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                first = lines.setdefault((key.tag, key.value), line)
                if first != line:
                    raise ConfigError(here, f"duplicate key at line {line} (first at line {first})")
            _no_duplicate_keys(value, here, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _no_duplicate_keys(item, f"{path}.{index}", seen)


def secret_values(config: Config) -> list[str]:
    """Every secret in the config, for the log redactor."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, SecretStr):
            value = node.get_secret_value()
            if len(value) >= 4:
                found.append(value)
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return found


def embedded_default() -> Config:
    """What `botbridge console` uses with no -c: the echo backend and a state file."""
    return Config.model_validate({"backends": {"echo": {"type": "echo"}}})
