"""Triton python-backend model that serves an ONNX file through ONNX Runtime.

The embedded tritonserver has no onnxruntime backend. The launcher serves a derived copy of the repository in which
each ONNX model keeps its name, inputs, outputs, batching and instances but runs through this one adapter:

    <derived>/<model>/config.pbtxt      backend: "python", parameters { onnx_file, intra_op_num_threads,
                                                                      allow_spinning (optional, "0" or "1") }
    <derived>/<model>/<version>/model.py    -> this file
    <derived>/<model>/<version>/model.onnx  -> the canonical repository's file

Requests that Triton's dynamic batcher hands over together run as ONE ORT call (concatenated on the batch axis),
so batching pays off exactly as it would with the native backend.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Adapter: Triton requests in, one ONNX Runtime run per batch, Triton responses out."""

    def initialize(self, args):
        """Open the ONNX Runtime session for this model version."""
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_num_threads", "0"))
        options.inter_op_num_threads = 1
        if "allow_spinning" in params:  # ORT's threads spin-wait by default: fast alone, costly on shared cores
            options.add_session_config_entry("session.intra_op.allow_spinning", params["allow_spinning"])
        self._session = ort.InferenceSession(
            os.path.join(version_dir, params.get("onnx_file", "model.onnx")),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._batching = int(config.get("max_batch_size", 0)) > 0
        self._input_names = [tensor["name"] for tensor in config["input"]]
        self._output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests):
        """Run every request of this batch in one session call; a failure answers each request with the error."""
        try:
            per_request = [
                {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self._input_names}
                for request in requests
            ]
            if self._batching and len(per_request) > 1:
                return self._run_batched(per_request)
            return [self._respond(self._session.run(self._output_names, feeds)) for feeds in per_request]
        except Exception as exc:  # a bad request must never take the model down
            error = pb_utils.TritonError(f"onnxruntime adapter: {type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]

    def _run_batched(self, per_request):
        sizes = [next(iter(feeds.values())).shape[0] for feeds in per_request]
        merged = {name: np.concatenate([feeds[name] for feeds in per_request]) for name in self._input_names}
        outputs = self._session.run(self._output_names, merged)
        bounds = np.cumsum(sizes)[:-1]
        split = [np.split(array, bounds) for array in outputs]
        return [self._respond([parts[i] for parts in split]) for i in range(len(per_request))]

    def _respond(self, arrays):
        pairs = zip(self._output_names, arrays, strict=True)
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in pairs]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self):
        """Release the session."""
        self._session = None
