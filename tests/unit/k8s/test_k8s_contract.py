"""The manifests agree with the code they deploy: Triton's flags and health paths as the launcher and the real
tritonservers know them (the embedded 2.51 the tests run, and 2.57 = NGC 25.04, the release the image pins), the
client's gRPC port, the HPA's metric and the prometheus-adapter rule, the tritonforge CLI flags the Jobs pass, and the
SLO file the load test reads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from k8s_render import K8S, container, find, render
from typer.exceptions import TyperException

from tritonforge.cli.main import app
from tritonforge.client.settings import ClientSettings
from tritonforge.loadtests.slo import load_model_slo
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions
from tritonforge.serving.model_control import ModelControlKey
from tritonforge.serving.server_install import ServerInstall, resolve_install

SERVING = ("overlays/gpu", "overlays/cpu", "overlays/canary")
PINNED_RELEASE, PINNED_VERSION = "25.04", "2.57.0"  # NGC release of docker/serving.Dockerfile and its Triton version
PINNED_FLAGS = Path(__file__).with_name(f"tritonserver_{PINNED_VERSION}_flags.txt")
NEW_IN_PINNED: set[str] = set()
"""Flags the manifests may use that the embedded 2.51 lacks (each one untested by the integration tests): none."""


def _triton(target: str, name: str = "triton") -> dict[str, Any]:
    return container(find(render(target), "Deployment", name))


def _flags(args: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args)


def _embedded_flags() -> set[str]:
    install = resolve_install(None)
    result = subprocess.run(
        [str(install.binary), "--help"], env=install.environment(), capture_output=True, text=True, timeout=30
    )
    known = set(re.findall(r"^  (--[a-z][a-z0-9-]+)", result.stdout + result.stderr, flags=re.MULTILINE))
    assert "--grpc-max-connection-age" in known  # the help text was read
    return known


def _pinned_flags() -> set[str]:
    lines = PINNED_FLAGS.read_text().splitlines()
    return {line for line in lines if line.startswith("--")}


def test_args_are_flags_both_real_tritonservers_accept() -> None:
    """Every flag exists in the embedded 2.51 (what the tests run) and in 2.57 (what the image runs)."""
    embedded, pinned = _embedded_flags(), _pinned_flags()
    used = set(_flags(_triton("overlays/gpu")["args"]))
    assert used - pinned == set(), "flags the pinned Triton does not have"
    assert used - embedded == NEW_IN_PINNED, "flags the tests cannot exercise on the embedded 2.51"
    assert embedded - pinned == set(), "2.57 dropped a flag 2.51 has"  # the recorded list is a superset: honest


def test_the_flag_list_is_the_pinned_images_release() -> None:
    stages = (K8S.parent / "docker" / "serving.Dockerfile").read_text()
    assert f"FROM nvcr.io/nvidia/tritonserver:{PINNED_RELEASE}-py3 AS storage" in stages
    assert f"tritonserver {PINNED_VERSION} (NGC {PINNED_RELEASE}" in PINNED_FLAGS.read_text()


def test_the_launchers_safety_flags_exist_in_both_servers(tmp_path: Path) -> None:
    """--server-binary may point at the NGC image's tritonserver: loopback and restricted model control work there."""
    install = ServerInstall(binary=Path("tritonserver"), backend_directory=None, backends=frozenset())
    server = EmbeddedTriton(ServerOptions(repository=Path("/models"), model_control_mode="explicit"))
    server.model_control_key = ModelControlKey.generate()
    flags = {arg.split("=", 1)[0] for arg in server._command(install)[1:]}
    assert {"--grpc-address", "--http-address", "--metrics-address", "--grpc-restricted-protocol"} <= flags
    assert flags - _embedded_flags() == set() and flags - _pinned_flags() == set()


@pytest.mark.parametrize("target", SERVING)
def test_model_control_is_off_or_guarded_by_a_key_from_a_secret(target: str) -> None:
    """Today every pod runs --model-control-mode=none; should one turn it on, the key must come from a Secret."""
    deployments = [obj for obj in render(target) if obj["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        triton = container(deployment)
        flags = _flags(triton["args"])
        if flags["--model-control-mode"] == "none":
            assert not any(f in flags for f in ("--grpc-restricted-protocol", "--http-restricted-api"))
            continue
        env = {e["name"]: e for e in triton["env"]}
        for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
            categories, _, rest = flags[flag].partition(":")
            assert "model-repository" in categories.split(","), flag
            variable = re.fullmatch(r"[a-z0-9-]+=\$\((\w+)\)", rest)
            assert variable and "secretKeyRef" in env[variable.group(1)]["valueFrom"], flag


def test_args_agree_with_the_launcher() -> None:
    """The flags the launcher always gives a full Triton install have the same values in the Deployment."""
    install = ServerInstall(binary=Path("tritonserver"), backend_directory=None, backends=frozenset())
    launcher = _flags(EmbeddedTriton(ServerOptions(repository=Path("/models")))._command(install)[1:])
    deployed = _flags(_triton("overlays/gpu")["args"])
    for flag in ("--model-control-mode", "--strict-readiness"):
        assert deployed[flag] == launcher[flag], flag
    assert "--exit-timeout-secs" in launcher and "--grpc-port" in launcher


@pytest.mark.parametrize("target", SERVING)
def test_ports_probes_and_drain_budget(target: str) -> None:
    deployment = find(render(target), "Deployment", "triton")
    triton = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    flags = _flags(triton["args"])
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert int(flags["--http-port"]) == ports["http"] and int(flags["--metrics-port"]) == ports["metrics"]
    # the client library's default address is the gRPC port the Services expose
    assert int(flags["--grpc-port"]) == ports["grpc"] == int(ClientSettings().url.rsplit(":", 1)[1])
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = triton["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "model loading gets at least 10 min"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = triton["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + int(flags["--exit-timeout-secs"]) < grace
    assert flags["--strict-readiness"] == "true" and flags["--model-control-mode"] == "none"
    assert flags["--model-repository"] == "$(MODEL_REPOSITORY)"
    assert {e["name"] for e in triton["env"]} >= {"MODEL_REPOSITORY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_grpc_connections_are_recycled_and_client_keepalive_is_allowed() -> None:
    flags = _flags(_triton("overlays/gpu")["args"])
    assert 0 < int(flags["--grpc-max-connection-age"]) <= 300_000  # milliseconds
    assert flags["--grpc-keepalive-permit-without-calls"] == "true"
    # the client sends pings without calls when keepalive_time_s is set; the server must accept 10 s pings
    assert int(flags["--grpc-http2-min-recv-ping-interval-without-data"]) <= 10_000


def test_cpu_and_gpu_run_the_same_server_but_only_gpu_asks_for_a_gpu() -> None:
    gpu, cpu = (
        find(render("overlays/gpu"), "Deployment", "triton"),
        find(render("overlays/cpu"), "Deployment", "triton"),
    )
    assert container(gpu)["args"] == container(cpu)["args"]
    assert container(gpu)["image"] == container(cpu)["image"]
    assert container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in str(container(cpu)["resources"])
    assert gpu["spec"]["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["spec"]["template"]["spec"]["tolerations"])
    assert (
        "nodeSelector" not in cpu["spec"]["template"]["spec"] and "tolerations" not in cpu["spec"]["template"]["spec"]
    )


@pytest.mark.parametrize("target", (*SERVING, "jobs"))
def test_every_pod_is_non_root_read_only_and_pinned(target: str) -> None:
    for obj in render(target):
        if obj["kind"] not in {"Deployment", "Job"}:
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for c in pod["containers"]:
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])
            image = c["image"]
            assert re.fullmatch(r"[\w.\-/]+:[\w.\-]+", image) and not image.endswith(":latest"), image
            assert set(c["resources"]["requests"]) <= set(c["resources"]["limits"])


def test_hpa_metric_is_the_prometheus_adapter_rule_output_over_triton_counters() -> None:
    adapter = find(render("monitoring"), "ConfigMap", "prometheus-adapter")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    outputs = {rule["name"]["as"]: rule for rule in rules}
    for target in SERVING:
        hpa = find(render(target), "HorizontalPodAutoscaler", "triton")
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] in outputs
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    query = outputs["triton_queue_time_per_request_us"]["metricsQuery"]
    assert "nv_inference_queue_duration_us" in query and "nv_inference_request_success" in query
    assert set(rules[0]["resources"]["overrides"]) == {"namespace", "pod"}


def test_build_job_runs_on_the_serving_gpu_type() -> None:
    job = find(render("jobs"), "Job", "build-engine-digits")
    serving = find(render("overlays/gpu"), "Deployment", "triton")["spec"]["template"]["spec"]["nodeSelector"]
    assert job["spec"]["template"]["spec"]["nodeSelector"] == serving
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "1"


def _cli(job: dict[str, Any]) -> dict[str, Any]:
    """Parse a Job's tritonforge command line with the real CLI (types, required options), without running it."""
    c = container(job)
    assert c["command"] == ["tritonforge"]
    args = c["args"]
    words = [a for a in args if not a.startswith("-")]
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    for word in words:
        group = group.get_command(ctx, word)  # type: ignore[attr-defined]
        assert group is not None, f"tritonforge has no command {word!r}"
    options = [a for a in args if a.startswith("-")]
    return group.make_context("tritonforge", options).params


def test_job_command_lines_parse_with_the_real_cli() -> None:
    jobs = render("jobs")
    master = _cli(find(jobs, "Job", "loadtest-master"))
    workers_job = find(jobs, "Job", "loadtest-workers")
    worker = _cli(workers_job)
    build = _cli(find(jobs, "Job", "build-engine-digits"))
    assert build["model"] == "digits" and str(build["output_repository"]).startswith("/models/")
    assert master["expect_workers"] == workers_job["spec"]["parallelism"] == workers_job["spec"]["completions"]
    assert master["model"] == worker["model"] and master["url"] == worker["url"]
    service = find(jobs, "Service", "loadtest-master")
    assert worker["master_host"] == service["metadata"]["name"]
    assert worker["master_port"] == master["master_bind_port"] == service["spec"]["ports"][0]["port"]
    assert str(master["slo"]).startswith("/slo/")


def test_a_misspelt_flag_does_not_parse() -> None:
    job = find(render("jobs"), "Job", "loadtest-master")
    broken = {**job, "spec": {**job["spec"]}}
    broken["spec"]["template"] = yaml.safe_load(yaml.safe_dump(job["spec"]["template"]))
    broken["spec"]["template"]["spec"]["containers"][0]["args"].append("--expected-workers=4")
    with pytest.raises(TyperException, match="No such option: --expected-workers"):
        _cli(broken)


def test_master_reads_the_slo_configmap_that_the_loader_accepts(tmp_path: Path) -> None:
    jobs = render("jobs")
    master_job = find(jobs, "Job", "loadtest-master")
    master = _cli(master_job)
    pod = master_job["spec"]["template"]["spec"]
    mount = next(m for m in container(master_job)["volumeMounts"] if str(master["slo"]).startswith(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config = next(o for o in jobs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == volume["configMap"]["name"])
    key = Path(master["slo"]).relative_to(mount["mountPath"]).as_posix()
    (tmp_path / key).write_text(config["data"][key])
    spec = load_model_slo(tmp_path / key, master["model"])
    assert spec is not None
    assert (K8S / "jobs" / key).read_text() == config["data"][key]
