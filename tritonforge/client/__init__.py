"""gRPC client library for services that call Triton: checked requests, deadlines, safe retries, typed errors.

    from tritonforge.client import TritonClient

    with TritonClient("127.0.0.1:8001", timeout_s=2.0) as client:
        logits = client.infer("digits", {"image": batch})["logits"]

`AsyncTritonClient` offers the same methods as coroutines. Settings come from arguments or `TRITONFORGE_CLIENT_*`
environment variables (see ClientSettings). Errors are the ClientError classes of `tritonforge.errors`.
"""

from __future__ import annotations

from tritonforge.client.aio import AsyncTritonClient
from tritonforge.client.base import InferOutputs, ModelState
from tritonforge.client.client import TritonClient
from tritonforge.client.io import InferJob, InputSpec, OutputFormat, render_outputs, run_infer_job
from tritonforge.client.retry import Deadline, RetryBudget, RetryPolicy
from tritonforge.client.settings import ClientSettings
from tritonforge.client.tensors import ModelSignature, TensorInfo, validate_inputs
from tritonforge.client.transport import AsyncTransport, SyncTransport

__all__ = [
    "AsyncTransport",
    "AsyncTritonClient",
    "ClientSettings",
    "Deadline",
    "InferJob",
    "InferOutputs",
    "InputSpec",
    "ModelSignature",
    "ModelState",
    "OutputFormat",
    "RetryBudget",
    "RetryPolicy",
    "SyncTransport",
    "TensorInfo",
    "TritonClient",
    "render_outputs",
    "run_infer_job",
    "validate_inputs",
]
