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
