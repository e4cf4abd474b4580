"""The exported `digits` repository against the real embedded tritonserver: Triton accepts what the converters wrote."""

from __future__ import annotations

import json

import numpy as np
import tritonclient.grpc as grpcclient

from tritonforge.converters.repo_check import check_repository
from tritonforge.converters.repository import sha256_file
from tritonforge.converters.triton_config import read_config
from tritonforge.serving.launcher import EmbeddedTriton


def test_repo_check_finds_nothing_when_checking_the_served_repository(triton_server: EmbeddedTriton) -> None:
    findings = check_repository(triton_server.repository)
    assert [str(f) for f in findings] == []
    assert findings.model_count >= 1 and findings.version_count >= 1


def test_served_config_matches_config_pbtxt_when_triton_loads_the_export(triton_server: EmbeddedTriton) -> None:
    written = read_config(triton_server.repository / "digits" / "config.pbtxt")
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        served = client.get_model_config("digits").config

    assert served.name == written.name == "digits"
    assert served.max_batch_size == written.max_batch_size == 64
    assert [(i.name, i.data_type, list(i.dims)) for i in served.input] == [
        (i.name, i.data_type, list(i.dims)) for i in written.input
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in served.output] == [
        (o.name, o.data_type, list(o.dims)) for o in written.output
    ]
    assert served.dynamic_batching.max_queue_delay_microseconds == written.dynamic_batching.max_queue_delay_microseconds


def test_manifest_describes_the_served_model_file_when_the_example_is_exported(triton_server: EmbeddedTriton) -> None:
    model_dir = triton_server.repository / "digits"
    latest = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    manifest = json.loads((model_dir / str(latest) / "manifest.json").read_text())

    assert manifest["sha256"] == sha256_file(model_dir / str(latest) / "model.onnx")
    assert manifest["parity"]["passed"] is True
    assert manifest["export"]["opset"] >= 17


def test_served_logits_match_onnx_runtime_when_a_batch_is_sent(triton_server: EmbeddedTriton, digits_split) -> None:
    import onnxruntime as ort

    batch = digits_split.x_test[:16]
    model_dir = triton_server.repository / "digits"
    latest = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    session = ort.InferenceSession(str(model_dir / str(latest) / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(["logits"], {"image": batch})[0]
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        request = grpcclient.InferInput("image", list(batch.shape), "FP32")
        request.set_data_from_numpy(batch)
        served = client.infer("digits", [request]).as_numpy("logits")

    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_allclose(served, digits_split.torch_logits[:16], atol=1e-4, rtol=1e-3)
