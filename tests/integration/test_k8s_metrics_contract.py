"""The names the k8s manifests depend on exist on a real Triton: the probe paths answer 200 on its HTTP port and the
counters the prometheus-adapter rule divides appear on its metrics port (embedded tritonserver 2.51, the pinned
image's release, serving the digits example)."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tritonforge.client import TritonClient
from tritonforge.serving.launcher import EmbeddedTriton

K8S = Path(__file__).resolve().parents[2] / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"


def _render(target: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_probe_paths_answer_on_the_real_server(triton_server: EmbeddedTriton) -> None:
    (deployment,) = [o for o in _render("overlays/gpu") if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        status, _ = _get(triton_server.http_url + container[probe]["httpGet"]["path"])
        assert status == 200, probe


def test_adapter_rule_counters_are_exported_by_triton(triton_server: EmbeddedTriton) -> None:
    (adapter,) = [
        o for o in _render("monitoring") if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "prometheus-adapter"
    ]
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    used = set(re.findall(r"\b(nv_[a-z_]+)\{", rule["metricsQuery"] + rule["seriesQuery"]))
    assert used == {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    with TritonClient(triton_server.grpc_url) as client:  # one request, so the per-model counters have samples
        client.infer("digits", {"image": _digit()})
    _, text = _get(triton_server.metrics_url)
    exported = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^(nv_[a-z_]+)\{[^}]*model="digits"[^}]*\} (\S+)$', text, re.M)
    }
    assert used <= set(exported), f"missing on the metrics port: {used - set(exported)}"
    assert exported["nv_inference_request_success"] >= 1


def _digit() -> Any:
    import numpy as np

    from tritonforge.examples.digits import load_split

    return np.ascontiguousarray(load_split().x_test[:1], dtype=np.float32)
