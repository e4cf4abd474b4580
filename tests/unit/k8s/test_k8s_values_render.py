"""`tritonforge k8s render`: one values file fills image tag, model repository, namespace and HPA bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.errors import ConfigError
from tritonforge.k8s_render import DeployValues, Replicas, load_values, render

K8S = Path(__file__).resolve().parents[3] / "k8s"


def _objects(text: str) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in yaml.safe_load_all(text) if o}


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_every_overlay_renders_with_the_values_applied(overlay: str) -> None:
    values = DeployValues(
        overlay=overlay, namespace="inference", image_tag="0.2.0-storage", model_repository="gs://models/digits",
        replicas=Replicas(min=3, max=12), queue_time_target_us=1500,
    )  # fmt: skip
    objects = _objects(render(values, k8s_dir=K8S))
    assert {o["metadata"].get("namespace") for o in objects.values()} == {"inference"}
    deployment = objects["Deployment/triton"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "tritonserver"]
    assert container["image"] == "ghcr.io/tritonforge/tritonforge-serving:0.2.0-storage"
    (config,) = [o for key, o in objects.items() if key.startswith("ConfigMap/triton-config")]
    assert config["data"]["MODEL_REPOSITORY"] == "gs://models/digits"
    hpa = objects["HorizontalPodAutoscaler/triton"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "1500"


def test_the_example_values_file_renders_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "manifests.yaml"
    result = CliRunner().invoke(
        app, ["k8s", "render", str(K8S / "values.example.yaml"), "--k8s-dir", str(K8S), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Deployment/triton" in _objects(out.read_text())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("overlay: prod\nmodel_repository: s3://x\n", "overlay"),
        ("overlay: canary\nmodel_repository: s3://x\n", "overlay"),
        ("model_repository: s3://x\nreplicas: {min: 5, max: 2}\n", "replicas.max 2 is below replicas.min 5"),
        ("model_repository: s3://x\nimage_tagg: 1\n", "image_tagg"),
        ("replicas: {min: 1, max: 2}\n", "model_repository"),
    ],
)
def test_a_bad_values_file_is_one_line_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_values(path)
    assert "\n" not in str(caught.value)


def test_a_missing_overlay_folder_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--k8s-dir"):
        render(DeployValues(model_repository="s3://x"), k8s_dir=tmp_path)
