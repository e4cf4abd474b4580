"""The model-health monitor's objects hold together: promtool fires and silences each of its alerts, its
PrometheusRule carries exactly the rule file's groups, the ServiceMonitor scrapes the monitor's Service (the job the
rules select), and the Deployment runs `tritonforge monitor serve` with flags the real CLI parses, on the port the
Service and probes name, non-root and read-only, from an image compose builds with the monitor extra.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomllib
import typer
import yaml
from k8s_render import K8S, container, find, render

from tritonforge.cli.main import app

ROOT = K8S.parent
RULES = K8S / "monitoring" / "rules" / "tritonforge-monitor.rules.yaml"
RULE_TESTS = RULES.with_name("tritonforge-monitor.test.yaml")
ALERTS = {
    "TritonforgeDriftDetected",
    "TritonforgeQualityDrop",
    "TritonforgeFairnessGap",
    "TritonforgePredictionLogDrops",
    "TritonforgePredictionLogLagging",
    "TritonforgeMonitorStale",
    "TritonforgeMonitorDown",
}
JOB = "tritonforge-monitor"


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH; install it with `apt-get install prometheus` (Debian/Ubuntu)")
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _monitor() -> dict[str, Any]:
    return find(render("monitor"), "Deployment", "tritonforge-monitor")


def _params(args: list[str]) -> dict[str, Any]:
    """Parse the container's command line with the real CLI, without running it."""
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    for word in [a for a in args if not a.startswith("-")]:
        group = group.get_command(ctx, word)  # type: ignore[attr-defined]
        assert group is not None, f"tritonforge has no command {word!r}"
    return group.make_context("tritonforge", [a for a in args if a.startswith("-")]).params


def test_promtool_checks_the_monitor_rules() -> None:
    result = _promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_fire_and_silence_every_monitor_alert() -> None:
    result = _promtool("test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == ALERTS
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == ALERTS


@pytest.mark.parametrize(
    ("old", "new", "alert"),
    [
        ("> 900", "> 3000", "TritonforgePredictionLogLagging"),
        ("(tritonforge_fairness_gap_lower", "(tritonforge_fairness_gap_lower - 0.15", "TritonforgeFairnessGap"),
    ],
)
def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path, old: str, new: str, alert: str) -> None:
    """The unit tests can fail: a looser threshold no longer fires where the tests expect it."""
    assert old in RULES.read_text()
    (tmp_path / RULES.name).write_text(RULES.read_text().replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and alert in result.stdout + result.stderr


def test_monitor_rules_select_the_monitor_job_and_carry_severity_and_runbook() -> None:
    readme = (K8S / "README.md").read_text()
    assert {r["alert"] for r in _rules()} == ALERTS
    for rule in _rules():
        # Drops are counted in the clients' processes, scraped under their own jobs.
        assert (f'job="{JOB}"' in rule["expr"]) == (rule["alert"] != "TritonforgePredictionLogDrops"), rule["alert"]
        assert rule["for"] and rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["runbook_url"].endswith("k8s/README.md#monitoring"), rule["alert"]
        assert rule["alert"] in readme, f"{rule['alert']} has no runbook entry in k8s/README.md"


def test_monitor_prometheus_rule_embeds_the_rule_files_groups() -> None:
    rule = find(render("monitoring"), "PrometheusRule", "tritonforge-monitor")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], (
        "prometheusrule-tritonforge-monitor.yaml differs from its rule file; regenerate it: "
        ".venv/bin/python tests/unit/k8s/test_k8s_monitoring.py"
    )
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_scrapes_the_monitor_service_as_the_rules_job() -> None:
    monitor = find(render("monitoring"), "ServiceMonitor", "tritonforge-monitor")
    spec = monitor["spec"]
    (endpoint,) = spec["endpoints"]
    services = [o for o in render("monitor") if o["kind"] == "Service"]
    selected = [
        s
        for s in services
        if s["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
        and spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    (service,) = selected
    assert service["metadata"]["labels"][spec["jobLabel"]] == JOB
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["port"] == 9108
    # The triton ServiceMonitor must not pick the monitor's Service up as a Triton target.
    triton = find(render("monitoring"), "ServiceMonitor", "triton")["spec"]["selector"]["matchLabels"]
    assert not triton.items() <= service["metadata"]["labels"].items()


def test_monitor_runs_monitor_serve_with_flags_the_cli_parses_on_the_service_port() -> None:
    deployment = _monitor()
    c = container(deployment)
    assert c["command"] == ["tritonforge"] and c["args"][:2] == ["monitor", "serve"]
    params = _params(c["args"])
    assert params["listen"] == "0.0.0.0" and params["port"] == 9108  # the pod IP is scraped
    assert str(params["repository"]) == "/models"
    env = {e["name"] for e in c["env"]}
    for name in re.findall(r"\$\((\w+)\)", " ".join(c["args"])):
        assert name in env, f"$({name}) is not in the container's env"
    (port,) = c["ports"]
    assert port["containerPort"] == params["port"] and port["name"] == "metrics"
    service = find(render("monitor"), "Service", "tritonforge-monitor")
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    selector = service["spec"]["selector"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_monitor_pod_is_non_root_read_only_bounded_and_reads_the_repository_read_only() -> None:
    pod = _monitor()["spec"]["template"]["spec"]
    c = container(_monitor())
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    context = c["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"] == c["resources"]["limits"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "/tmp" in mounts and mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    find(render("jobs"), "PersistentVolumeClaim", claim["claimName"])  # the repository volume the build Job writes


def test_monitor_image_is_built_by_compose_with_the_monitor_extra_and_never_torch() -> None:
    image = container(_monitor())["image"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    (build,) = [s["build"] for s in compose.values() if s.get("image") == image]
    assert build["dockerfile"] == "docker/tools.Dockerfile"
    text = (ROOT / build["dockerfile"]).read_text()
    stage = text.split(f" AS {build['target']}\n", 1)[1].split("\nFROM ", 1)[0]
    extras = re.findall(r"\.whl\[([\w,]+)\]", stage)
    assert extras == ["monitor"]
    assert "USER 1000:1000" in stage and 'ENTRYPOINT ["tritonforge"]' in stage and "EXPOSE 9108" in stage
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pulled = [*project["dependencies"], *project["optional-dependencies"]["monitor"]]
    assert not [r for r in pulled if re.match(r"(torch|tritonforge\[)", r)], pulled
