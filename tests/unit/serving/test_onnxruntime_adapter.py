"""The ONNX Runtime python-backend adapter, run without Triton: a stand-in for triton_python_backend_utils.

The model is a real ONNX graph made here: out[b] = sum over t of TABLE[ids[b, t]] * scale[b], so an id outside the
table fails ORT's Gather exactly as a token id outside MiniLM's vocabulary does.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from google.protobuf import json_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from tritonforge.serving.derived_repository import ADAPTER_FILE

TABLE = np.arange(40, dtype=np.float32).reshape(10, 4)
MAX_BATCH_SIZE = 8


@dataclass
class FakeTensor:
    tensor_name: str
    array: np.ndarray

    def name(self) -> str:
        return self.tensor_name

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class FakeRequest:
    tensors: dict[str, np.ndarray]

    def inputs(self) -> list[FakeTensor]:
        return [FakeTensor(name, array) for name, array in self.tensors.items()]


class FakeError:
    INTERNAL = 13
    INVALID_ARG = 3

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self.message = message
        self.code = code


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor]
    error: FakeError | None = None

    def output(self, name: str) -> np.ndarray:
        return {t.tensor_name: t.array for t in self.output_tensors}[name]


def _fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    module.TritonError = FakeError  # type: ignore[attr-defined]

    def get_input_tensor_by_name(request: FakeRequest, name: str) -> FakeTensor | None:
        return FakeTensor(name, request.tensors[name]) if name in request.tensors else None

    module.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    return module


def _write_onnx(path: Path) -> None:
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
        helper.make_node("ReduceSum", ["rows", "axes"], ["summed"], keepdims=0),
        helper.make_node("Mul", ["summed", "scale"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "gather_sum",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
        initializer=[numpy_helper.from_array(TABLE, "table"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _config(max_batch_size: int) -> dict[str, Any]:
    config = model_config_pb2.ModelConfig(name="gather_sum", backend="python", max_batch_size=max_batch_size)
    config.input.add(name="ids", data_type=model_config_pb2.TYPE_INT64, dims=[-1])
    config.input.add(name="scale", data_type=model_config_pb2.TYPE_FP32, dims=[1])
    config.output.add(name="out", data_type=model_config_pb2.TYPE_FP32, dims=[4])
    config.parameters["onnx_file"].string_value = "model.onnx"
    config.parameters["intra_op_num_threads"].string_value = "1"
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


@pytest.fixture
def adapter_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    spec = importlib.util.spec_from_file_location("onnxruntime_adapter_under_test", ADAPTER_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_model(adapter_module: types.ModuleType, tmp_path: Path):
    """Initialize the adapter the way the python backend does, on the gather-sum graph."""

    def load(max_batch_size: int = MAX_BATCH_SIZE, config: dict[str, Any] | None = None) -> Any:
        (tmp_path / "1").mkdir(exist_ok=True)
        _write_onnx(tmp_path / "1" / "model.onnx")
        model = adapter_module.TritonPythonModel()
        model.initialize(
            {
                "model_config": json.dumps(config or _config(max_batch_size)),
                "model_repository": str(tmp_path),
                "model_version": "1",
            }
        )
        return model

    return load


def _request(ids: Any, scale: Any = None, **extra: np.ndarray) -> FakeRequest:
    ids = np.asarray(ids, dtype=np.int64)
    scale = np.ones((ids.shape[0], 1), np.float32) if scale is None else np.asarray(scale)
    return FakeRequest({"ids": ids, "scale": scale, **extra})


def _want(ids: Any, scale: Any = None) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    scale = np.ones((ids.shape[0], 1), np.float32) if scale is None else np.asarray(scale, np.float32)
    return TABLE[ids].sum(axis=1) * scale


def test_a_merged_batch_answers_each_request_with_its_own_rows(load_model) -> None:
    model = load_model()
    batches = [[[1, 2]], [[3, 4], [5, 6]], [[0, 9]]]

    responses = model.execute([_request(ids) for ids in batches])

    for response, ids in zip(responses, batches, strict=True):
        assert response.error is None
        np.testing.assert_array_equal(response.output("out"), _want(ids))


def test_an_id_outside_the_table_fails_only_its_own_request_of_a_merged_batch(load_model) -> None:
    model = load_model()

    responses = model.execute([_request([[1, 2]]), _request([[1, 10**7]]), _request([[3, 4]])])

    assert "ONNX Runtime failed on this request" in responses[1].error.message
    assert responses[1].error.code == FakeError.INVALID_ARG  # ORT's InvalidArgument: the request's fault
    assert responses[0].error is None and responses[2].error is None
    np.testing.assert_array_equal(responses[0].output("out"), _want([[1, 2]]))
    np.testing.assert_array_equal(responses[2].output("out"), _want([[3, 4]]))


def test_every_error_response_gets_its_own_error_object(load_model) -> None:
    """The stub frees a TritonError's shared-memory copy when the same object is sent twice: never share one."""
    model = load_model()
    bad = [_request([[10**7, 1]]), _request(np.zeros((0, 2))), _request([[-(10**7), 0]]), _request([[99]])]

    responses = model.execute(bad + [_request([[1, 2]])])

    errors = [r.error for r in responses[:4]]
    assert all(error is not None for error in errors)
    assert len({id(error) for error in errors}) == len(errors)
    assert responses[4].error is None


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (_request(np.zeros((0, 2))), "has a batch of 0 (Triton passes a batch dim of 2**32 or -2**63 on as 0)"),
        (_request(np.zeros((MAX_BATCH_SIZE + 1, 2))), f"has a batch of {MAX_BATCH_SIZE + 1}; send 1 to 8"),
        (_request([[1, 2]], np.ones((1, 1), np.float64)), "input 'scale' has dtype float64; the model expects float32"),
        (_request([[1, 2]], np.ones((1, 2), np.float32)), "input 'scale' has shape [1, 2]; the model expects [-1, 1]"),
        (_request([1, 2]), "input 'ids' has shape [2]; the model expects [-1, -1]"),
        (_request(np.zeros((1, 0))), "input 'ids' has shape [1, 0]; no dimension may be 0"),
        (FakeRequest({"ids": np.ones((1, 2), np.int64)}), "missing input 'scale'"),
        (_request([[1, 2]], extra=np.ones((1, 1), np.float32)), "unknown input(s) ['extra']"),
        (_request([[1, 2]], np.ones((2, 1), np.float32)), "inputs have different batch sizes [1, 2]"),
    ],
)
def test_an_impossible_request_is_refused_with_a_clear_error_and_its_neighbours_answered(
    load_model, request_: FakeRequest, message: str
) -> None:
    model = load_model()

    bad, good = model.execute([request_, _request([[7, 8]])])

    assert message in bad.error.message and bad.error.code == FakeError.INVALID_ARG
    assert bad.output_tensors == []
    np.testing.assert_array_equal(good.output("out"), _want([[7, 8]]))


def test_requests_with_different_sequence_lengths_run_in_separate_merges(load_model) -> None:
    model = load_model()
    batches = [[[1]], [[2, 3, 4]], [[5]], [[6, 7, 8]]]

    responses = model.execute([_request(ids) for ids in batches])

    for response, ids in zip(responses, batches, strict=True):
        np.testing.assert_array_equal(response.output("out"), _want(ids))


def test_nan_and_inf_values_are_answered_not_refused(load_model) -> None:
    model = load_model()
    scale = np.array([[np.nan], [np.inf]], np.float32)

    (response,) = model.execute([_request([[1, 2], [3, 4]], scale)])

    assert response.error is None
    out = response.output("out")
    assert np.isnan(out[0]).all() and np.isposinf(out[1]).all()


def test_a_model_without_a_batch_axis_checks_full_shapes_and_runs_requests_alone(load_model) -> None:
    config = _config(0)
    config["input"][0]["dims"] = ["2", "-1"]
    config["input"][1]["dims"] = ["2", "1"]
    model = load_model(config=config)

    good, bad = model.execute([_request([[1, 2], [3, 4]]), _request([[1, 2, 3]])])

    np.testing.assert_array_equal(good.output("out"), _want([[1, 2], [3, 4]]))
    assert "input 'ids' has shape [1, 3]; the model expects [2, -1]" in bad.error.message


def test_initialize_refuses_an_input_type_onnx_runtime_cannot_take(load_model) -> None:
    config = _config(MAX_BATCH_SIZE)
    config["input"][0]["data_type"] = "TYPE_STRING"

    with pytest.raises(ValueError, match="input 'ids' has data_type 'TYPE_STRING'"):
        load_model(config=config)
