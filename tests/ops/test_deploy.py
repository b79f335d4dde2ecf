"""deploy/ checked offline: every YAML parses, the Dockerfile copies only files that exist, the
shipped config loads with the secrets the env file and the Secret provide, the Kubernetes config
equals the shipped one, and systemd accepts the unit. (Docker itself cannot run here.)"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
_REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_every_yaml_file_parses():
    paths = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(paths) >= 8
    for path in paths:
        assert list(yaml.safe_load_all(path.read_text())), path


def test_dockerfile_copies_only_existing_files_and_runs_as_non_root():
    instructions = dockerfile_instructions()
    copies = [rest for word, rest in instructions if word == "COPY" and "--from" not in rest]
    assert copies
    for rest in copies:
        *sources, _ = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
    # What pyproject packages must be in the image.
    copied = {Path(s).parts[0] for rest in copies for s in shlex.split(rest)[:-1]}
    assert {"pyproject.toml", "README.md", "bridge", "adapters"} <= copied
    words = dict(instructions)  # the last of each kind
    assert words["FROM"].startswith("python:3.11-slim")
    assert words["USER"].split(":")[0] not in ("root", "0")
    assert "/healthz" in words["HEALTHCHECK"]
    assert "/var/lib/botbridge" in words["VOLUME"]
    # BuildKit's per-Dockerfile ignore file must let every copied path through.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for rest in copies:
        for source in shlex.split(rest)[:-1]:
            assert f"!{source.rstrip('/')}" in {i.rstrip("/") for i in ignore}, source


def test_shipped_config_loads_with_the_example_secrets_and_names_them_all():
    raw = yaml.safe_load((DEPLOY / "botbridge.yaml").read_text())
    env = env_file(DEPLOY / "botbridge.env.example")
    config = parse_config(raw, env)
    assert config.http.host == "0.0.0.0" and config.http.port == 8080
    assert config.bridge.state_dir == "/var/lib/botbridge" and config.bridge.log_format == "json"
    required = set(_REQUIRED_VAR.findall((DEPLOY / "botbridge.yaml").read_text()))
    secret = next(d for d in k8s_documents() if d["kind"] == "Secret")
    assert required <= set(env), "botbridge.env.example misses a variable"
    assert required <= set(secret["stringData"]), "the Kubernetes Secret misses a variable"
    redis = parse_config(raw, {**env, "BOTBRIDGE_STORE": "redis", "REDIS_URL": "redis://r:6379/0"})
    assert redis.bridge.store.type == "redis"


def test_compose_runs_the_bridge_with_redis_and_secrets_from_an_env_file():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    bridge, redis = compose["services"]["bridge"], compose["services"]["redis"]
    assert (DEPLOY / bridge["build"]["context"] / bridge["build"]["dockerfile"]).exists()
    env_files = [e["path"] if isinstance(e, dict) else e for e in bridge["env_file"]]
    for path in env_files:
        assert (DEPLOY / f"{path}.example").exists(), f"{path}: no example to copy"
    assert bridge["environment"]["BOTBRIDGE_STORE"] == "redis"
    assert bridge["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert bridge["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in redis
    assert any(v.startswith("state:/var/lib/botbridge") for v in bridge["volumes"])


def test_kubernetes_deployment_probes_config_secret_and_state():
    docs = k8s_documents()
    kinds = {doc["kind"]: doc for doc in docs}
    assert {"Deployment", "ConfigMap", "Secret", "PersistentVolumeClaim", "Service"} <= set(kinds)
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["envFrom"][0]["secretRef"]["name"] == kinds["Secret"]["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes
    assert volumes["config"]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim == kinds["PersistentVolumeClaim"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert kinds["Deployment"]["spec"]["strategy"]["type"] == "Recreate"  # one poller per token
    # The ConfigMap holds the same config as deploy/botbridge.yaml: they cannot drift apart.
    shipped = yaml.safe_load((DEPLOY / "botbridge.yaml").read_text())
    assert yaml.safe_load(kinds["ConfigMap"]["data"]["config.yaml"]) == shipped
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_kustomize_renders_the_manifests():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0 and "kustomize" in result.stderr and "unknown" in result.stderr:
        pytest.skip("this kubectl has no kustomize")
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(rendered) == 5


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (no systemd on this machine)")
    unit = (DEPLOY / "systemd" / "botbridge.service").read_text()
    assert "DynamicUser=yes" in unit and "StateDirectory=botbridge" in unit
    assert "EnvironmentFile=/etc/botbridge/botbridge.env" in unit
    assert "Restart=on-failure" in unit
    # verify checks that ExecStart exists: point it at this checkout's installed command.
    command = Path(sys.executable).parent / "botbridge"
    if not command.exists():
        pytest.skip(f"{command} is not installed (pip install -e .)")
    local = tmp_path / "botbridge.service"
    local.write_text(unit.replace("/opt/botbridge/bin/botbridge", str(command)))
    result = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    if security.returncode == 0 and match:
        assert float(match.group(1)) <= 2.0, security.stdout[-2000:]


def test_config_example_documents_every_bridge_http_and_access_key():
    from bridge.config import (
        AccessSettings,
        BridgeSettings,
        Budgets,
        DeliverySettings,
        HttpSettings,
        StoreConfig,
        load_config,
    )

    text = (ROOT / "config.example.yaml").read_text()
    models = {
        "bridge": [BridgeSettings, StoreConfig, DeliverySettings],
        "http": [HttpSettings],
        "access": [AccessSettings, Budgets],
    }
    for section, classes in models.items():
        block = re.search(rf"# --- section: {section} ---\n(.*?)# --- /section", text, re.S)
        assert block, section
        for name in (field for cls in classes for field in cls.model_fields):
            assert re.search(rf"^\s*(# )?{name}:", block.group(1), re.M), f"{section}.{name}"
    config = load_config(ROOT / "config.example.yaml", env={})
    assert config.bridge == BridgeSettings(state_dir=config.bridge.state_dir)  # all defaults
    assert config.http == HttpSettings()
    assert config.access == AccessSettings()
