"""The config file: the example loads, mistakes name their path, secrets come from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge.config import load_config, parse_config, secret_values
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def error_of(raw, env=None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env or {})
    return str(caught.value)


def test_example_config_loads():
    config = load_config(ROOT / "config.example.yaml", env={})
    assert config.backends


def test_minimal_config_from_the_issue_works_as_is(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "backends:\n  main:\n    type: openai\n    base_url: http://127.0.0.1:8900/v1\n"
        "    session: body\n"
    )
    config = load_config(path, env={})
    assert config.default_backend() == "main"
    assert config.routes == []
    assert config.bridge.session_keys == "qualified"


def test_missing_field_names_its_path():
    assert error_of({"backends": {"main": {"type": "openai"}}}) == (
        "backends.main.base_url: field required"
    )


def test_unknown_key_is_rejected_with_its_path():
    assert error_of({"backends": {"m": {"type": "echo", "colour": "red"}}}) == (
        "backends.m.colour: unknown key"
    )
    assert error_of({"bridge": {"max_in_fligth": 3}}) == "bridge.max_in_fligth: unknown key"


def test_unknown_backend_type_lists_the_known_ones():
    assert "backends.m.type: unknown type 'gpt'" in error_of({"backends": {"m": {"type": "gpt"}}})


def test_route_to_missing_backend():
    raw = {"backends": {"a": {"type": "echo"}}, "routes": [{"backend": "b"}]}
    assert error_of(raw) == "routes.0.backend: no backend named 'b'"


def test_two_backends_need_a_default():
    raw = {"backends": {"a": {"type": "echo"}, "b": {"type": "echo"}}}
    assert (
        error_of(raw) == "bridge.default_backend: required when more than one backend is configured"
    )


def test_environment_variables_and_defaults():
    raw = {
        "backends": {
            "m": {
                "type": "openai",
                "base_url": "${BASE:-http://127.0.0.1:1}/v1",
                "api_key": "${KEY}",
            }
        }
    }
    config = parse_config(raw, {"KEY": "sk-secret-123"})
    backend = config.backends["m"]
    assert backend.base_url == "http://127.0.0.1:1/v1"
    assert backend.api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret-123" not in repr(config)
    assert secret_values(config) == ["sk-secret-123"]


def test_unset_environment_variable_names_path_and_variable():
    raw = {
        "adapters": {"telegram": {"token": "${TELEGRAM_TOKEN}"}},
        "backends": {"e": {"type": "echo"}},
    }
    assert (
        error_of(raw) == "adapters.telegram.token: environment variable TELEGRAM_TOKEN is not set"
    )


def test_telegram_webhook_needs_url_and_secret():
    raw = {
        "adapters": {"telegram": {"token": "t", "mode": "webhook"}},
        "backends": {"e": {"type": "echo"}},
    }
    assert error_of(raw) == "adapters.telegram.webhook_url: required when mode is webhook"


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_cli_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {"backends": {"main": {"type": "openai", "bogus": 1, "base_url": "http://x"}}}
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "--offline", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "backends.main.bogus: unknown key" in result.stderr


def test_webhook_adapters_need_the_http_server():
    raw = {"adapters": {"slack": {"bot_token": "x", "signing_secret": "y"}},
           "backends": {"e": {"type": "echo"}}, "http": {"enabled": False}}
    assert error_of(raw) == "http.enabled: must be true: adapters.slack receives its events over HTTP"


def test_null_is_a_value_but_an_empty_section_is_unset():
    raw = yaml.safe_load(
        "bridge:\nadapters:\n  telegram:\n  slack:\n    bot_token: x\n    app_token: y\n"
        "    progress_reaction: null\nbackends:\n  e:\n    type: echo\n"
        "access:\n  denied_reply: null\n"
    )
    config = parse_config(raw, {})
    assert config.adapters.telegram is None
    assert config.adapters.slack.progress_reaction is None  # no reaction, as documented
    assert config.access.denied_reply is None


def test_telegram_send_ceiling_and_redis_prefix_are_checked_with_their_paths():
    base = {"backends": {"e": {"type": "echo"}}}
    telegram = {"token": "1:x", "max_sends_per_second": -1}
    error = error_of({**base, "adapters": {"telegram": telegram}})
    assert "adapters.telegram.max_sends_per_second" in error
    error = error_of({**base, "adapters": {"telegram": {"token": "1:x", "typing_delay": -1}}})
    assert "adapters.telegram.typing_delay" in error
    assert "bridge.max_pending" in error_of({**base, "bridge": {"max_pending": 0}})
    error = error_of({**base, "adapters": {"discord": {"token": "x", "typing_delay": "soon"}}})
    assert "adapters.discord.typing_delay" in error
    error = error_of({**base, "bridge": {"store": {"type": "redis", "prefix": "a:b"}}})
    assert "bridge.store.prefix" in error
    config = parse_config(
        {**base, "adapters": {"telegram": {"token": "1:x", "max_sends_per_second": 0}}}, {}
    )
    assert config.adapters.telegram is not None
    assert config.adapters.telegram.max_sends_per_second == 0  # 0: no bot-wide ceiling
    assert parse_config(base, {}).bridge.store.prefix == "botbridge"


def load_error(tmp_path, content: bytes) -> str:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    return str(caught.value)


MINIMAL = "backends:\n  main:\n    type: echo\n"


def test_a_file_that_is_not_utf8_is_named_not_a_traceback(tmp_path):
    assert "is UTF-16 or binary, not UTF-8 text: save it as UTF-8" in load_error(
        tmp_path, MINIMAL.encode("utf-16")
    )
    assert "is UTF-16 or binary" in load_error(tmp_path, MINIMAL.encode("utf-16-le"))  # no BOM
    latin = ("# café\n" + MINIMAL).encode("latin-1")
    assert "is not UTF-8 text (byte 0xe9 at line 1): save it as UTF-8" in load_error(
        tmp_path, latin
    )
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())  # UTF-8 with a BOM is fine
    assert load_config(path, env={}).backends


def test_duplicate_keys_are_named_with_their_lines(tmp_path):
    top = MINIMAL + "bridge:\n  max_in_flight: 4\nbridge:\n  drain_timeout: 5\n"
    assert load_error(tmp_path, top.encode()).endswith(
        "bridge: duplicate key at line 6 (first at line 4)"
    )
    nested = MINIMAL + "    type: openai\n"
    assert load_error(tmp_path, nested.encode()).endswith(
        "backends.main.type: duplicate key at line 4 (first at line 3)"
    )


def test_credentials_inside_a_url_are_refused_without_repeating_them():
    for raw, key in [
        ({"backends": {"m": {"type": "openai", "base_url": "https://bob:hunter2@llm.example/v1"}}},
         "backends.m.base_url"),
        ({"backends": {"m": {"type": "echo"}},
          "adapters": {"telegram": {"token": "t", "api_base_url": "https://u:pw-secret@tg/bot"}}},
         "adapters.telegram.api_base_url"),
    ]:  # fmt: skip
        error = error_of(raw)
        assert error.startswith(f"{key}: must not hold credentials")
        assert "api_key" in error and "environment" in error
        assert "hunter2" not in error and "pw-secret" not in error


def test_a_home_relative_state_dir_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_config({"backends": {"e": {"type": "echo"}},
                           "bridge": {"state_dir": "~/bot", "store": {"path": "~/s.db"}}}, {})  # fmt: skip
    assert config.bridge.state_dir == str(tmp_path / "bot")
    assert config.bridge.store.path == str(tmp_path / "s.db")
    config = parse_config({"backends": {"e": {"type": "echo"}}, "bridge": {"state_dir": "~/bot"}})
    assert config.bridge.store_path() == str(tmp_path / "bot" / "botbridge.sqlite3")


def test_the_redis_key_prefix_is_checked():
    assert parse_config({"bridge": {"store": {"type": "redis"}}}).bridge.store.prefix == "botbridge"
    for bad in ("two words", "{tag}", "a:b", ""):
        assert error_of({"bridge": {"store": {"prefix": bad}}}) == (
            "bridge.store.prefix: must be non-empty, without spaces, ':', '{' or '}'"
        )
