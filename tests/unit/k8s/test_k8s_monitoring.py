"""The monitoring objects hold together: promtool accepts the alert rules and their unit tests fire and silence each
alert, the PrometheusRule carries exactly the rule file's groups, the ServiceMonitor selects the rendered Triton
Services' metrics port, and the Grafana dashboard's panels all query metrics from one allow-list
(k8s/monitoring/triton-metrics.yaml) that the integration test checks against a real Triton.

Regenerate the PrometheusRule after editing the rule file:
    .venv/bin/python tests/unit/k8s/test_k8s_monitoring.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # k8s_render, when run as a script
from k8s_render import K8S, find, render  # noqa: E402

from tritonforge.monitoring.exporter import metric_names as exporter_metric_names  # noqa: E402

MONITORING = K8S / "monitoring"
RULES = MONITORING / "rules" / "triton-alerts.rules.yaml"
RULE_TESTS = MONITORING / "rules" / "triton-alerts.test.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALLOW_LIST = MONITORING / "triton-metrics.yaml"
# The model-health monitor's rules (k8s/monitor; tested in test_k8s_monitor.py), generated the same way.
MONITOR_RULES = MONITORING / "rules" / "tritonforge-monitor.rules.yaml"
MONITOR_PROMETHEUS_RULE = MONITORING / "prometheusrule-tritonforge-monitor.yaml"
MONITOR_RULE_NAME = "tritonforge-monitor"
ALERTS = {
    "TritonP99LatencyOverSLO",
    "TritonErrorRatioHigh",
    "TritonQueueTimeGrowing",
    "TritonDown",
    "TritonModelNotReady",
    "TritonTargetsMissing",
    "TritonNoTraffic",
}
# Triton's GPU metrics as its documentation names them (docs/user_guide/metrics.md, "GPU Metrics", r24.10): they
# only appear on a server with a GPU, so the integration test cannot scrape them on these CPU machines.
TRITON_DOCUMENTED_GPU_METRICS = {
    "nv_gpu_utilization",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
    "nv_gpu_power_limit",
    "nv_energy_consumption",
}
# Grafana's variables, replaced so that promtool can parse the dashboard's queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "triton", "$model": ".*"}


def promtool() -> str:
    """promtool from PATH; a missing one fails (not skips): the alert tests are part of `make test`."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH; install it with `apt-get install prometheus` (Debian/Ubuntu)")
    return path


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects; every use must carry a `{...}` selector so none hides unmatched."""
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
    bare = set(re.findall(r"\b(?:nv|tritonforge)_[a-z_]+\b", expr)) - names
    assert not bare, f"metric used without a label selector: {bare} in {expr!r}"
    return names


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    board = dashboard()
    queries = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    variables = [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return queries + variables


def allow_list() -> dict[str, list[str]]:
    return yaml.safe_load(ALLOW_LIST.read_text())


def prometheus_rule_text(rules: Path = RULES, name: str = "triton") -> str:
    """A PrometheusRule as generated from a rule file: same groups, object metadata around them."""
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": "monitoring",
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/part-of": "tritonforge",
                "release": "kube-prometheus-stack",
            },
        },
        "spec": {"groups": yaml.safe_load(rules.read_text())["groups"]},
    }

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    head = (
        f"# Generated from rules/{rules.name} (the source of truth, tested by promtool): do not edit the"
        ' groups\n# here; regenerate as k8s/README.md ("Monitoring") says. A test fails when the two differ.\n'
        "# kube-prometheus-stack only picks PrometheusRules with its release label (see servicemonitor.yaml).\n"
    )
    return head + yaml.dump(obj, Dumper=Dumper, sort_keys=False, width=100_000)


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_fire_and_silence_every_alert() -> None:
    result = _promtool("test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fired == ALERTS and silent == ALERTS, "every alert needs a firing and a silent case"


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests can fail: the p99 alert at 35 ms instead of 25 ms no longer fires on a 30 ms p99."""
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("> 25000", "> 35000"))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and "TritonP99LatencyOverSLO" in result.stdout + result.stderr


def test_rules_match_the_alert_names_and_carry_severity_and_runbook() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    readme = (K8S / "README.md").read_text()
    for rule in rules:
        assert rule["for"] and rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule["annotations"]["runbook_url"].endswith("k8s/README.md#monitoring"), rule["alert"]
        assert rule["alert"] in readme, f"{rule['alert']} has no runbook entry in k8s/README.md"
    assert "\n## Monitoring\n" in readme


def test_p99_and_error_thresholds_are_the_slo_files() -> None:
    slo = yaml.safe_load((K8S / "jobs" / "slo.yaml").read_text())["digits"]
    groups = yaml.safe_load(RULES.read_text())["groups"]
    exprs = {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}
    assert exprs["TritonP99LatencyOverSLO"].rstrip().endswith(f"> {int(slo['p99_ms'] * 1000)}")
    assert exprs["TritonErrorRatioHigh"].rstrip().endswith(f"> {slo['max_error_ratio']}")


def test_prometheus_rule_embeds_the_rule_files_groups() -> None:
    rule = find(render("monitoring"), "PrometheusRule", "triton")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], (
        "prometheusrule.yaml differs from rules/triton-alerts.rules.yaml; regenerate it: "
        ".venv/bin/python tests/unit/k8s/test_k8s_monitoring.py"
    )
    assert PROMETHEUS_RULE.read_text() == prometheus_rule_text()


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu", "overlays/canary"])
def test_service_monitor_selects_the_triton_services_metrics_port(overlay: str) -> None:
    monitor = find(render("monitoring"), "ServiceMonitor", "triton")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    (endpoint,) = spec["endpoints"]
    services = [o for o in render(overlay) if o["kind"] == "Service"]
    selected = [
        s
        for s in services
        if s["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
        and spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    scraped = {s["metadata"]["name"] for s in selected if endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}}
    serving = {d["metadata"]["name"] for d in render(overlay) if d["kind"] == "Deployment"}
    assert scraped == serving, "every Triton Deployment's Service (and nothing else) is scraped"
    for name in scraped:
        port = next(p for p in find(services, "Service", name)["spec"]["ports"] if p["name"] == endpoint["port"])
        assert port["port"] == 8002
    # The alert rules select job="triton": jobLabel must turn every scraped Service into that job.
    assert {find(services, "Service", n)["metadata"]["labels"][spec["jobLabel"]] for n in scraped} == {"triton"}
    assert all('job="triton"' in expr for expr in rule_exprs())


def test_dashboard_panels_all_query_prometheus() -> None:
    board = dashboard()
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels) and len({p["title"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no target"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["type"] == "prometheus", panel["title"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in (
        "request rate",
        "p50",
        "p99",
        "queue",
        "compute",
        "batch size",
        "fail",
        "gpu utilisation",
        "gpu memory",
        "drift",
        "accuracy",
        "label coverage",
        "fairness gap",
        "prediction-log drops",
        "prediction-log lag",
    ):
        assert topic in titles, f"no panel about {topic}"


def test_dashboard_queries_parse_with_promtool(tmp_path: Path) -> None:
    """Each dashboard query is valid PromQL: promtool checks them as recording rules."""
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    for variable, value in GRAFANA_VARIABLES.items():
        exprs = [e.replace(variable, value) for e in exprs]
    assert not any("$" in e for e in exprs), "a Grafana variable without a test value"
    rules = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "dashboard.rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", "dashboard.rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_used_is_in_the_allow_list() -> None:
    monitor_rules = [r["expr"] for g in yaml.safe_load(MONITOR_RULES.read_text())["groups"] for r in g["rules"]]
    used = set().union(*(metric_names(e) for e in rule_exprs() + monitor_rules + dashboard_exprs()))
    allowed = allow_list()
    assert set(allowed) == {"served", "gpu", "prometheus", "monitor"}
    assert used == set().union(*map(set, allowed.values())), "triton-metrics.yaml must list exactly the names used"
    assert set(allowed["gpu"]) <= TRITON_DOCUMENTED_GPU_METRICS
    assert allowed["prometheus"] == ["up"]
    assert set(allowed["monitor"]) <= exporter_metric_names(), "a monitor metric the exporter does not write"


def test_monitoring_dashboard_configmap_is_labelled_for_the_grafana_sidecar() -> None:
    config_map = find(render("monitoring"), "ConfigMap", "triton-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["triton.json"]) == dashboard()


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(prometheus_rule_text())
    MONITOR_PROMETHEUS_RULE.write_text(prometheus_rule_text(MONITOR_RULES, MONITOR_RULE_NAME))
    sys.stdout.write(f"wrote {PROMETHEUS_RULE} and {MONITOR_PROMETHEUS_RULE}\n")
