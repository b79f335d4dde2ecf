"""deploy/ checked by the tools made for each kind of file, offline: hadolint for the Dockerfile,
kubernetes-validate (the Kubernetes API's own schemas, strict) for every manifest, the Compose
Specification's schema (check-jsonschema) for both compose files; each tool is also shown a broken
copy and must refuse it. Then what the split layout means: an ingress and a worker Deployment with
the right role, readiness per role, a worker autoscaler, a persistent Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge.config import StoreConfig, parse_config
from bridge.roles import RoleName, check_role
from tests.ops.test_deploy import env_file

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SPLIT = DEPLOY / "kubernetes" / "split"
MANIFEST_DIRS = [DEPLOY / "kubernetes", SPLIT]
COMPOSE_FILES = [DEPLOY / "docker-compose.yml", DEPLOY / "docker-compose.split.yml"]


def tool(name: str) -> str:
    """A checker installed with the dev extras (next to this Python, or on PATH)."""
    found = Path(sys.executable).parent / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: pip install -e '.[dev]' installs it")
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return on_path


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)


def manifests() -> list[Path]:
    return [
        path
        for folder in MANIFEST_DIRS
        for path in sorted(folder.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    ]


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_hadolint_passes_the_dockerfile_and_refuses_a_worse_one(tmp_path):
    hadolint = tool("hadolint")
    result = run(hadolint, "--failure-threshold", "info", str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr
    worse = tmp_path / "Dockerfile"
    worse.write_text((DEPLOY / "Dockerfile").read_text().replace("USER 10001:10001", "USER root"))
    refused = run(hadolint, "--failure-threshold", "info", str(worse))
    assert refused.returncode != 0 and "DL3002" in refused.stdout  # last USER should not be root


def test_every_kubernetes_manifest_validates_strictly_against_the_api_schemas(tmp_path):
    validate = tool("kubernetes-validate")
    paths = manifests()
    assert len(paths) >= 9
    result = run(validate, "--strict", "--quiet", *map(str, paths))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "worker.yaml"
    # A misspelt probe would be silently ignored by a plain YAML parse, and by kubectl's client.
    broken.write_text(
        (SPLIT / "worker.yaml").read_text().replace("readinessProbe:", "readynessProbe:")
    )
    refused = run(validate, "--strict", "--quiet", str(broken))
    assert refused.returncode != 0 and "readynessProbe" in refused.stdout


def test_each_kustomization_lists_every_manifest_beside_it():
    for folder in MANIFEST_DIRS:
        listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
        beside = [p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"]
        assert sorted(listed) == sorted(beside), folder


def test_both_compose_files_follow_the_compose_specification(tmp_path):
    checker = tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", *map(str, COMPOSE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE_FILES[1].read_text().replace("    command:", "    comand:", 1))
    refused = run(checker, "--builtin-schema", "vendor.compose-spec", str(broken))
    assert refused.returncode != 0 and "comand" in refused.stdout


def split_documents() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(SPLIT.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in documents(path):
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def pod_env(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def test_the_kubernetes_split_layout_runs_each_role_with_its_probes_on_a_persistent_redis():
    docs = split_documents()
    redis_service = docs[("Service", "botbridge-redis")]
    port = redis_service["spec"]["ports"][0]["port"]
    shipped = yaml.safe_load((DEPLOY / "botbridge.yaml").read_text())
    config_map = docs[("ConfigMap", "botbridge-config")]
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == shipped
    secret = docs[("Secret", "botbridge-secrets")]["stringData"]
    for role in (RoleName.INGRESS, RoleName.WORKER):
        deployment = docs[("Deployment", f"botbridge-{role}")]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"][-2:] == ["--role", str(role)]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["terminationGracePeriodSeconds"] > 30  # bridge.drain_timeout, then hand over
        env = pod_env(container)
        assert env["REDIS_URL"] == f"redis://botbridge-redis:{port}/0"
        # What the pod will run loads, and is a valid split role (Redis store).
        config = parse_config(shipped, {**secret, **env})
        check_role(config, role)
        assert config.bridge.store.type == "redis"
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert labels == deployment["spec"]["template"]["metadata"]["labels"]
    assert docs[("Service", "botbridge-ingress")]["spec"]["selector"] == {
        "app.kubernetes.io/name": "botbridge-ingress"
    }
    autoscaler = docs[("HorizontalPodAutoscaler", "botbridge-worker")]["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == "botbridge-worker"
    # More workers than partitions would stand idle.
    assert autoscaler["maxReplicas"] <= StoreConfig().partitions
    redis = docs[("StatefulSet", "botbridge-redis")]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_the_compose_split_layout_runs_an_ingress_and_scaled_workers_on_a_persistent_redis():
    compose = yaml.safe_load(COMPOSE_FILES[1].read_text())
    services = compose["services"]
    env = env_file(DEPLOY / "botbridge.env.example")
    shipped = yaml.safe_load((DEPLOY / "botbridge.yaml").read_text())
    for role in (RoleName.INGRESS, RoleName.WORKER):
        service = services[str(role)]
        assert service["command"][-2:] == ["--role", str(role)]
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        check_role(parse_config(shipped, {**env, **service["environment"]}), role)
    assert services["worker"]["deploy"]["replicas"] > 1
    assert "ports" not in services["worker"]  # workers receive nothing
    command = services["redis"]["command"]
    assert command[command.index("--appendfsync") + 1] == "always"
