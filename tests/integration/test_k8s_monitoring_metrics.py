"""Every metric the alert rules and the Grafana dashboard use (k8s/monitoring/triton-metrics.yaml, `served`) is on a
real Triton's metrics port: the embedded tritonserver 2.51 (the pinned image's release) serving digits, started with
the flag the Deployment needs for the p99 summaries, after a few requests. GPU metrics cannot appear on these CPU
machines; tests/unit/k8s/test_k8s_monitoring.py checks them against Triton's documented names."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from tritonforge.client import TritonClient
from tritonforge.examples.digits import load_split
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions

K8S = Path(__file__).resolve().parents[2] / "k8s"
SUMMARY_FLAG = "--metrics-config=summary_latencies=true"


@pytest.fixture(scope="module")
def summary_server(digits_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    options = ServerOptions(
        repository=digits_repository,
        log_path=tmp_path_factory.mktemp("summary-server") / "tritonserver.log",
        extra_args=(SUMMARY_FLAG,),
    )
    server = EmbeddedTriton(options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_rule_and_dashboard_metrics_are_exported_by_triton(summary_server: EmbeddedTriton) -> None:
    served = set(yaml.safe_load((K8S / "monitoring" / "triton-metrics.yaml").read_text())["served"])
    images = np.ascontiguousarray(load_split().x_test[:3], dtype=np.float32)
    with TritonClient(summary_server.grpc_url) as client:
        for i in range(len(images)):
            client.infer("digits", {"image": images[i : i + 1]})
    # Triton refreshes its metrics on an interval (2 s by default): read until the three requests show, or 60 s pass.
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(summary_server.metrics_url, timeout=30) as response:
            text = response.read().decode()
        if re.search(rf'^nv_inference_request_success\{{[^}}]*model="digits"[^}}]*\}} {len(images)}$', text, re.M):
            break
        if time.monotonic() > deadline:
            break  # the assertions below say what is missing
        time.sleep(0.5)
    digits = {m.group(1) for m in re.finditer(r'^(nv_[a-z_]+)\{[^}]*model="digits"[^}]*\} \S+$', text, re.M)}
    assert served <= digits, f"not on the metrics port for model digits: {sorted(served - digits)}"
    success = re.search(r'^nv_inference_request_success\{[^}]*model="digits"[^}]*\} (\S+)$', text, re.M)
    assert success is not None and float(success.group(1)) == len(images)
    p99 = re.search(
        r'^nv_inference_request_summary_us\{[^}]*model="digits"[^}]*quantile="0.99"[^}]*\} (\S+)$', text, re.M
    )
    assert p99 is not None and float(p99.group(1)) > 0, "the p99 alert's quantile series is missing or empty"
