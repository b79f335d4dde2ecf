"""deploy/prometheus/alerts.yml and deploy/grafana/botbridge.json checked by the tools made for
them: promtool validates the rules and runs their unit tests (alerts.test.yml), and validates the
PromQL of every dashboard panel; every metric either file names is one botbridge exports (read
from a rendered `Metrics()` registry); the dashboard is importable JSON with the panels the
operator needs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bridge.metrics import OUTCOMES, Metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "botbridge.json"
_METRIC = re.compile(r"\bbotbridge_[a-z_]+")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs it from Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    return found


def exported() -> set[str]:
    """Every series name botbridge's registry can produce."""
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def alert_expressions() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def panel_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_alert_rules_pass_promtool_and_their_unit_tests():
    tool = promtool()
    for args in (["check", "rules", ALERTS.name], ["test", "rules", "alerts.test.yml"]):
        result = subprocess.run(
            [tool, *args], cwd=ALERTS.parent, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert set(alert_expressions()) == {
        "BotbridgeAdapterDisconnected",
        "BotbridgeCircuitOpen",
        "BotbridgeQueueRising",
        "BotbridgeUndeliverableReplies",
        "BotbridgeNotAnswering",
    }


def test_alerts_and_panels_name_only_series_botbridge_exports():
    known = exported()
    for where, expr in [*alert_expressions().items(), *enumerate(panel_expressions())]:
        unknown = set(_METRIC.findall(expr)) - known
        assert not unknown, f"{where}: {unknown} not in bridge/metrics.py"
        for outcome in re.findall(r'outcome(?:=|!=|=~|!~)"([^"]+)"', expr):
            assert set(outcome.split("|")) <= set(OUTCOMES), f"{where}: outcome {outcome}"


def test_every_panel_query_is_valid_promql(tmp_path):
    # Grafana's variables become what they stand for; promtool then parses each query.
    rules = [
        {"record": f"botbridge:panel_{i}", "expr": expr.replace("$__rate_interval", "5m")
         .replace("$job", ".*").replace("$instance", ".*")}
        for i, expr in enumerate(panel_expressions())
    ]  # fmt: skip
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_importable_and_shows_what_an_operator_needs():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    # Importable anywhere: the data source is an import input, not one installation's uid.
    [source] = dashboard["__inputs"]
    assert source["type"] == "datasource" and source["pluginId"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "state-timeline", "stat"}, panel["type"]
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"]["uid"] == "${" + source["name"] + "}"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for expr in panel_expressions():
        assert set(re.findall(r"\$(\w+)", expr)) <= variables | {"__rate_interval"}, expr
    shown = " ".join(panel_expressions())
    for needed in (
        "botbridge_messages_total", "botbridge_bridge_added_seconds_bucket",
        "botbridge_backend_request_seconds_bucket", "botbridge_backend_in_flight",
        "botbridge_queued", "botbridge_circuit_state", "botbridge_adapter_connected",
        "botbridge_tokens_total", "botbridge_budget_refusals_total",
    ):  # fmt: skip
        assert needed in shown, needed
