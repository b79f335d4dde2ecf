"""The command line as an operator uses it: console on a fresh machine, check, exit codes."""

from __future__ import annotations

import asyncio
import os
import sys

import yaml


async def botbridge(*args: str, stdin: str = "", env: dict[str, str] | None = None):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_console_with_no_config_answers_every_line_then_exits_0(tmp_path):
    code, out, err = await botbridge(
        "console", stdin="hello\n\nsecond line\n", env={"XDG_STATE_HOME": str(tmp_path)}
    )
    assert code == 0, err
    assert out.splitlines() == ["[wx:dm:cl.local] hello", "[wx:dm:cl.local] second line"]
    assert (tmp_path / "botbridge" / "botbridge.sqlite3").exists()


async def test_console_as_a_group_user_through_a_config(tmp_path, openai_fake):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bridge": {"state_dir": str(tmp_path)},
                "backends": {
                    "main": {"type": "openai", "base_url": openai_fake.base_url, "session": "body"}
                },
            }
        )
    )
    code, out, err = await botbridge(
        "console", "-c", str(config), "--user", "ann", "--group", "ops", stdin="status?\n"
    )
    assert code == 0, err
    assert out.splitlines() == ["echo: status?"]
    assert openai_fake.calls[0].json["session_id"] == "wx:group:cl.ops:user:cl.ann"


async def test_check_probes_backends_and_hides_secrets(tmp_path, openai_fake):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "backends": {
                    "good": {
                        "type": "openai",
                        "base_url": openai_fake.base_url,
                        "api_key": "${KEY}",
                    },
                    "down": {
                        "type": "openai",
                        "base_url": "http://127.0.0.1:9/v1",
                        "max_retries": 0,
                        "api_key": "${KEY}",
                    },
                },
                "bridge": {"default_backend": "good"},
            }
        )
    )
    code, out, err = await botbridge("check", "-c", str(config), env={"KEY": "sk-very-secret"})
    assert code == 1
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("backend")}
    assert " ok " in lines["good"] and "FAILED" in lines["down"]
    assert "sk-very-secret" not in out + err
    assert openai_fake.calls[0].headers["Authorization"] == "Bearer sk-very-secret"

    code, out, _ = await botbridge("check", "--offline", "-c", str(config), env={"KEY": "x"})
    assert code == 0 and out.startswith("config")


async def test_no_command_prints_help_and_exits_2():
    code, out, _ = await botbridge()
    assert code == 2 and "console" in out
