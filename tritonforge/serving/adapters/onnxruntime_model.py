"""Triton python-backend model that serves an ONNX file through ONNX Runtime.

The embedded tritonserver has no onnxruntime backend. The launcher serves a derived copy of the repository in which
each ONNX model keeps its name, inputs, outputs, batching and instances but runs through this one adapter:

    <derived>/<model>/config.pbtxt      backend: "python", parameters { onnx_file, intra_op_num_threads,
                                                                      allow_spinning (optional, "0" or "1") }
    <derived>/<model>/<version>/model.py    -> this file
    <derived>/<model>/<version>/model.onnx  -> the canonical repository's file

Requests that Triton's dynamic batcher hands over together run as ONE ORT call (concatenated on the batch axis),
so batching pays off exactly as it would with the native backend.

A bad request must fail alone and never take the server down, so:
- each request is checked against the config before anything runs (inputs present, dtype, rank, fixed dims, a batch
  dim in 1..max_batch_size, no empty dims). Triton's own checks let some through: it keeps the batch dim as a uint32,
  so a batch of 2**32 or -2**63 reaches the model as a batch of 0;
- when a merged run fails (an out-of-range token id fails ORT's Gather for the whole batch), each request runs again
  on its own, so only the bad ones get an error;
- every error response gets its OWN TritonError: the stub writes a TritonError into shared memory when it sends the
  response and frees the previous copy, so one object shared by two responses leaves the server reading freed memory
  (python backend 24.10, pb_error.cc; seen as std::bad_alloc or SIGSEGV that aborts the whole tritonserver).

This file runs inside the python backend's stub with only numpy, onnxruntime and Triton's own utilities.
"""

import json
import os
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

_NUMPY_DTYPES = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
}


Feeds = dict[str, npt.NDArray[Any]]
# A request's outcome: its output arrays, or (error message, TritonError code name or None for INTERNAL).
Result = list[npt.NDArray[Any]] | tuple[str, str | None]


class RequestError(Exception):
    """A request this model cannot run; its message goes back to that request's client."""


class InputSpec:
    """One configured input: name, numpy dtype, dims without the batch axis (-1 is free)."""

    def __init__(self, name: str, dtype: Any, dims: list[Any]) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)
        self.dims = tuple(int(d) for d in dims)


def input_specs(config: dict[str, Any]) -> list[InputSpec]:
    """Read the configured inputs (the python backend hands the config over as JSON)."""
    specs = []
    for tensor in config["input"]:
        data_type = tensor.get("data_type", "")
        if data_type not in _NUMPY_DTYPES:
            raise ValueError(f"input '{tensor['name']}' has data_type {data_type!r}, which ONNX Runtime cannot take")
        specs.append(InputSpec(tensor["name"], _NUMPY_DTYPES[data_type], tensor.get("dims", [])))
    return specs


def check_request(arrays: dict[str, npt.NDArray[Any] | None], specs: list[InputSpec], max_batch_size: int) -> Feeds:
    """Return the request's feeds, or raise RequestError naming what is wrong and what the model expects.

    Args:
        arrays: input name -> numpy array (None for an input the request lacks).
        specs: the configured inputs.
        max_batch_size: the config's max_batch_size; 0 means the model has no batch axis.
    """
    names = [spec.name for spec in specs]
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise RequestError(f"unknown input(s) {extra}; the model takes {names}")
    feeds: Feeds = {}
    for spec in specs:
        array = arrays.get(spec.name)
        if array is None:
            raise RequestError(f"missing input '{spec.name}'; the model takes {names}")
        check_input(spec, array, max_batch_size)
        feeds[spec.name] = array
    batch_sizes = sorted({array.shape[0] for array in feeds.values()}) if max_batch_size > 0 else []
    if len(batch_sizes) > 1:
        raise RequestError(f"inputs have different batch sizes {batch_sizes}; send one batch size")
    return feeds


def check_input(spec: InputSpec, array: npt.NDArray[Any], max_batch_size: int) -> None:
    """Raise RequestError unless `array` has the input's dtype, rank, fixed dims and a batch of 1..max_batch_size."""
    if array.dtype != spec.dtype:
        raise RequestError(f"input '{spec.name}' has dtype {array.dtype}; the model expects {spec.dtype}")
    want = ((-1,) if max_batch_size > 0 else ()) + spec.dims
    if array.ndim != len(want) or any(w not in (-1, got) for w, got in zip(want, array.shape, strict=True)):
        raise RequestError(f"input '{spec.name}' has shape {list(array.shape)}; the model expects {list(want)}")
    if max_batch_size > 0 and not 1 <= array.shape[0] <= max_batch_size:
        hint = " (Triton passes a batch dim of 2**32 or -2**63 on as 0)" if array.shape[0] == 0 else ""
        raise RequestError(f"input '{spec.name}' has a batch of {array.shape[0]}{hint}; send 1 to {max_batch_size}")
    if 0 in array.shape:
        raise RequestError(f"input '{spec.name}' has shape {list(array.shape)}; no dimension may be 0")


def mergeable_groups(feeds_list: list[Feeds]) -> list[list[int]]:
    """Group request indexes whose inputs share every non-batch shape, so they can run as one concatenated batch."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, feeds in enumerate(feeds_list):
        key = tuple((name, array.shape[1:]) for name, array in sorted(feeds.items()))
        groups.setdefault(key, []).append(index)
    return list(groups.values())


class TritonPythonModel:
    """Adapter: Triton requests in, one ONNX Runtime run per batch, Triton responses out."""

    def initialize(self, args: dict[str, str]) -> None:
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
        self._max_batch_size = int(config.get("max_batch_size", 0))
        self._specs = input_specs(config)
        self._output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer each request: its outputs, or an error of its own that leaves the other requests untouched."""
        results: list[Result | None] = [None] * len(requests)
        feeds_list: list[Feeds] = []
        indexes: list[int] = []
        for index, request in enumerate(requests):
            try:
                feeds_list.append(check_request(self._read_inputs(request), self._specs, self._max_batch_size))
                indexes.append(index)
            except RequestError as exc:
                results[index] = (f"onnxruntime adapter: {exc}", "INVALID_ARG")
            except Exception as exc:  # whatever it is, it belongs to this request alone
                results[index] = (f"onnxruntime adapter: reading the inputs failed: {type(exc).__name__}: {exc}", None)
        for index, result in zip(indexes, self._run_all(feeds_list), strict=True):
            results[index] = result
        return [self._respond(result) for result in results]

    def _read_inputs(self, request: Any) -> dict[str, npt.NDArray[Any] | None]:
        arrays = {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}
        for spec in self._specs:  # also by name, as Triton documents; inputs() lists what the request carries
            if arrays.get(spec.name) is None:
                tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                arrays[spec.name] = None if tensor is None else tensor.as_numpy()
        return arrays

    def _run_all(self, feeds_list: list[Feeds]) -> list[Result]:
        """Run the checked requests, merged where batching allows; a failed merge reruns its requests one by one."""
        results: list[Result] = [("onnxruntime adapter: not run", None)] * len(feeds_list)
        groups = mergeable_groups(feeds_list) if self._max_batch_size > 0 else [[i] for i in range(len(feeds_list))]
        for group in groups:
            group_feeds = [feeds_list[i] for i in group]
            outputs = self._run_merged(group_feeds) if len(group) > 1 else None
            if outputs is None:  # one request, or some request of the merge is bad: find out which, alone
                outputs = [self._run_one(feeds) for feeds in group_feeds]
            for index, result in zip(group, outputs, strict=True):
                results[index] = result
        return results

    def _run_one(self, feeds: Feeds) -> Result:
        try:
            return list(self._session.run(self._output_names, feeds))
        except Exception as exc:  # ORT refused this request's values (e.g. a token id outside the vocabulary)
            code = "INVALID_ARG" if type(exc).__name__ == "InvalidArgument" else None  # ORT's own verdict
            return (f"onnxruntime adapter: ONNX Runtime failed on this request: {type(exc).__name__}: {exc}", code)

    def _run_merged(self, group_feeds: list[Feeds]) -> list[Result] | None:
        """Run requests as one concatenated batch and split the outputs back; None if anything goes wrong."""
        sizes = [next(iter(feeds.values())).shape[0] for feeds in group_feeds]
        try:
            merged = {spec.name: np.concatenate([feeds[spec.name] for feeds in group_feeds]) for spec in self._specs}
            outputs = self._session.run(self._output_names, merged)
        except Exception:
            return None
        if any(array.ndim == 0 or array.shape[0] != sum(sizes) for array in outputs):
            return None  # an output without the batch axis cannot be split per request
        bounds = np.cumsum(sizes)[:-1]
        split = [np.split(array, bounds) for array in outputs]
        return [[parts[i] for parts in split] for i in range(len(group_feeds))]

    def _respond(self, result: Result | None) -> Any:
        """Build one response; an error gets a TritonError made for it alone (never shared, see the module doc)."""
        if result is None or isinstance(result, tuple):
            message, code_name = result or ("onnxruntime adapter: no result", None)
            code = getattr(pb_utils.TritonError, code_name, None) if code_name else None
            error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
            return pb_utils.InferenceResponse(output_tensors=[], error=error)
        pairs = zip(self._output_names, result, strict=True)
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in pairs]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        """Release the session."""
        self._session = None
