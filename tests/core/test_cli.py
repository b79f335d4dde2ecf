"""The command line as an operator uses it: console on a fresh machine, check, exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest
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


async def console_process(tmp_path, llm, *args: str, stdout=asyncio.subprocess.PIPE):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "bridge": {"state_dir": str(tmp_path / "state")},
        "backends": {"main": {"type": "openai", "base_url": llm.base_url, "max_retries": 0}},
    }))  # fmt: skip
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "console", "-c", str(config), *args,
        stdin=asyncio.subprocess.PIPE, stdout=stdout, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.parametrize("presses", [1, 2])
async def test_ctrl_c_while_the_backend_hangs_exits_130_at_once_and_keeps_the_question(
    tmp_path, openai_fake, presses
):
    openai_fake.slow_next(60)
    proc = await console_process(tmp_path, openai_fake)
    assert proc.stdin is not None
    proc.stdin.write(b"what is the meaning of life?\n")
    await proc.stdin.drain()
    await openai_fake.wait_for(lambda calls: calls, 30)  # the question is with the backend
    pressed = time.monotonic()
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.05)  # a person pressing twice, not synchronisation
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    took = time.monotonic() - pressed
    assert proc.returncode == 130, err.decode()
    assert took < 2.0, f"exited {took:.1f}s after Ctrl-C"
    assert "Traceback" not in err.decode() and "Error" not in err.decode()
    assert "stay pending" in err.decode()

    # The question was kept: the next console run answers it.
    proc = await console_process(tmp_path, openai_fake)
    out, err = await asyncio.wait_for(proc.communicate(b""), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["echo: what is the meaning of life?"]


async def test_a_reader_that_stops_early_ends_the_console_quietly(tmp_path, openai_fake):
    # `seq 2000 | botbridge console | head -1`: head reads one line and closes the pipe.
    read, write = os.pipe()
    proc = await console_process(tmp_path, openai_fake, stdout=write)
    os.close(write)
    assert proc.stdin is not None
    proc.stdin.write(b"".join(f"question {n}\n".encode() for n in range(2000)))
    proc.stdin.close()
    with os.fdopen(read, "rb") as reader:
        first = await asyncio.to_thread(reader.readline)
    assert first == b"echo: question 0\n"
    err = await asyncio.wait_for(proc.stderr.read(), 30)  # type: ignore[union-attr]
    code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    assert err.decode() == ""  # no BrokenPipeError, no flood of "not delivered"
    assert len(openai_fake.calls) <= 3  # it stopped asking the backend


async def test_a_config_saved_as_utf16_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_bytes("backends:\n  e:\n    type: echo\n".encode("utf-16"))
    for command in ("run", "check", "console"):
        code, _, err = await botbridge(command, "-c", str(config))
        assert code == 2, err
        assert err.splitlines() == [
            f"botbridge: config error: {config} is UTF-16 or binary, not UTF-8 text: "
            "save it as UTF-8"
        ]
