"""`botbridge check` as an operator uses it before a deploy: a short table, no secrets, and an exit
status a script can trust (0 all passed, 1 a probe failed, 2 the config is wrong)."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import yaml

from tests.fakes.telegram_api import FakeTelegram


async def check(config: dict, tmp_path) -> tuple[int, str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "check", "-c", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def telegram_config(telegram: FakeTelegram, token: str) -> dict:
    return {
        "backends": {"echo": {"type": "echo"}},
        "adapters": {
            "telegram": {
                "token": token,
                "api_base_url": telegram.base_url,
                "api_file_url": telegram.file_url,
            }
        },
    }


async def test_all_probes_pass_exit_0_with_a_table_and_no_token(tmp_path):
    async with FakeTelegram() as telegram:
        code, out, err = await check(telegram_config(telegram, telegram.token), tmp_path)
    assert code == 0, out + err
    rows = [re.split(r"\s{2,}", line, maxsplit=2) for line in out.splitlines()]
    assert [row[:2] for row in rows] == [
        ["config", "ok"],
        ["backend echo", "ok"],
        ["adapter telegram", "ok"],
    ]
    assert rows[2][2] == "@bridge_bot (id 7000001)"
    assert telegram.token not in out + err


async def test_a_refused_token_fails_the_check_without_printing_it(tmp_path):
    wrong = "987654:WRONG-token-that-must-not-show"
    async with FakeTelegram() as telegram:
        code, out, err = await check(telegram_config(telegram, wrong), tmp_path)
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("adapter telegram"))
    assert re.split(r"\s{2,}", line)[1] == "FAILED" and "token" in line
    assert wrong not in out + err and "WRONG-token" not in out + err


async def test_a_config_mistake_exits_2_naming_the_key(tmp_path):
    config = {"backends": {"echo": {"type": "echo"}}, "adapters": {"telegram": {"mode": "polling"}}}
    code, out, err = await check(config, tmp_path)
    assert code == 2 and out == ""
    assert "adapters.telegram.token: field required" in err
