"""A real Redis Cluster for the tests: three masters (no replicas) started from this machine's
`redis-server` on free 127.0.0.1 ports in a directory of their own, slots assigned with
`redis-cli --cluster create`, ready once every node reports `cluster_state:ok`.

    with OwnCluster(tmp_dir) as cluster: cluster.url   # redis://127.0.0.1:<port>/0 (any node)

Skipped when redis-server or redis-cli is missing, except in CI (`CI` set), where it fails like
the suite's other Redis tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.fakes.redis_server import free_port

MASTERS = 3
READY_WITHIN = 30.0  # seconds from start to cluster_state:ok on every node


class OwnCluster:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            if os.environ.get("CI"):
                raise RuntimeError("redis-server and redis-cli are needed for the cluster tests")
            pytest.skip("redis-server (with redis-cli) is not installed")
        for n in range(MASTERS):
            port, bus = free_port(), free_port()
            home = self.directory / str(n)
            home.mkdir(parents=True, exist_ok=True)
            argv = [
                server, "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(bus),
                "--cluster-config-file", str(home / "nodes.conf"),
                "--dir", str(home), "--save", "", "--appendonly", "no",
            ]  # fmt: skip
            quiet = subprocess.DEVNULL
            self._procs.append(subprocess.Popen(argv, stdout=quiet, stderr=quiet))
            self.ports.append(port)
        self._until(lambda: all(self._ping(port) for port in self.ports), "nodes answer")
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=READY_WITHIN,
        )
        self._until(lambda: all(self._ok(port) for port in self.ports), "cluster_state:ok")

    def stop(self) -> None:
        for proc in self._procs:
            proc.kill()
        for proc in self._procs:
            proc.wait()
        self._procs.clear()

    def _until(self, ready, what: str) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while not ready():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis cluster: not {what} after {READY_WITHIN:g}s")
            time.sleep(0.05)

    @staticmethod
    def _ping(port: int) -> bool:
        try:
            with redis.Redis(port=port, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    @staticmethod
    def _ok(port: int) -> bool:
        with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
            return client.cluster("info").get("cluster_state") == "ok"

    def __enter__(self) -> OwnCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
