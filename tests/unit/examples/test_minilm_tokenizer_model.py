"""The python-backend tokenizer model, run without Triton: a stand-in for triton_python_backend_utils."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format

from tritonforge.examples import minilm
from tritonforge.examples.text_corpus import evaluation_sentences


@dataclass
class FakeTensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor]
    error: Any = None

    def outputs(self) -> dict[str, np.ndarray]:
        return {t.name: t.array for t in self.output_tensors}


class FakeError:
    INTERNAL = 13
    INVALID_ARG = 3

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self.message = message
        self.code = code


def _fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    module.TritonError = FakeError  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = (  # type: ignore[attr-defined]
        lambda request, name: FakeTensor(name, request[name]) if name in request else None
    )
    return module


def _request(*texts: str | bytes) -> dict[str, np.ndarray]:
    """What Triton hands the model: TEXT as an object array of bytes, [n, 1]."""
    items = [t.encode() if isinstance(t, str) else t for t in texts]
    array = np.empty((len(items), 1), dtype=object)
    array[:, 0] = items
    return {"TEXT": array}


@pytest.fixture
def load_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the tokenizer model into a repository and initialize it the way the python backend does."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())

    def load(padding: str = "request") -> Any:
        repository = tmp_path / f"repo-{padding}"
        version_dir = minilm.write_tokenizer_model(repository, padding=padding)
        spec = importlib.util.spec_from_file_location(f"tokenizer_model_{padding}", version_dir / "model.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = json_format.MessageToDict(minilm.tokenizer_config(padding=padding), preserving_proto_field_name=True)
        model = module.TritonPythonModel()
        model.initialize(
            {
                "model_config": json.dumps(config),
                "model_repository": str(version_dir.parent),
                "model_version": version_dir.name,
            }
        )
        return model

    return load


def test_request_padding_pads_each_request_to_its_own_longest_text(load_model) -> None:
    model = load_model("request")
    short, long = ["Hi.", "Yes."], ["A considerably longer sentence than the others in this batch."]

    responses = model.execute([_request(*short), _request(*long)])

    for response, texts in zip(responses, (short, long), strict=True):
        assert response.error is None
        want = minilm.tokenize(texts)
        np.testing.assert_array_equal(response.outputs()["input_ids"], want["input_ids"])
        np.testing.assert_array_equal(response.outputs()["attention_mask"], want["attention_mask"])
        assert response.outputs()["input_ids"].dtype == np.int64


def test_batch_padding_pads_every_request_of_the_call_to_the_longest_of_all(load_model) -> None:
    model = load_model("batch")
    short, long = ["Hi.", "Yes."], ["A considerably longer sentence than the others in this batch."]

    responses = model.execute([_request(*short), _request(*long)])

    together = minilm.tokenize(short + long)
    widths = {r.outputs()["input_ids"].shape[1] for r in responses}
    assert widths == {together["input_ids"].shape[1]}
    np.testing.assert_array_equal(responses[0].outputs()["input_ids"], together["input_ids"][:2])
    np.testing.assert_array_equal(responses[1].outputs()["attention_mask"], together["attention_mask"][2:])


@pytest.mark.parametrize("padding", ["request", "batch"])
def test_a_request_that_is_not_utf8_gets_its_own_error_and_the_others_their_answers(load_model, padding: str) -> None:
    model = load_model(padding)

    responses = model.execute([_request("Fine text."), _request("ok", b"\xff\xfe bad"), _request("Also fine.")])

    assert responses[1].error is not None and "TEXT item 1 is not valid UTF-8" in responses[1].error.message
    assert responses[0].error is None and responses[2].error is None
    np.testing.assert_array_equal(responses[2].outputs()["input_ids"], minilm.tokenize(["Also fine."])["input_ids"])


def test_served_tokens_equal_in_process_tokens_on_the_evaluation_sentences(load_model) -> None:
    model = load_model("request")
    sentences = evaluation_sentences(n=200, seed=0) + ["", "word " * 600]

    (response,) = model.execute([_request(*sentences)])

    want = minilm.tokenize(sentences)
    np.testing.assert_array_equal(response.outputs()["input_ids"], want["input_ids"])
    assert response.outputs()["input_ids"].shape == (len(sentences), 256)


def test_initialize_refuses_an_unknown_padding_parameter(load_model, tmp_path: Path) -> None:
    model = load_model("request")
    config = json_format.MessageToDict(minilm.tokenizer_config(), preserving_proto_field_name=True)
    config["parameters"]["padding"] = {"string_value": "fixed"}
    version_dir = tmp_path / "repo-request" / "minilm_tokenizer" / "1"

    with pytest.raises(ValueError, match="padding='fixed' must be one of"):
        type(model)().initialize(
            {"model_config": json.dumps(config), "model_repository": str(version_dir.parent), "model_version": "1"}
        )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"TEXT": np.empty((0, 1), dtype=object)}, "TEXT has a batch of 0; send at least one text"),
        ({"TEXT": np.array([[b"a", b"b"]], dtype=object)}, "TEXT has shape [1, 2]; send BYTES [n, 1]"),
        ({"TEXT": np.array([b"a"], dtype=object)}, "TEXT has shape [1]; send BYTES [n, 1]"),
        ({}, "the request has no TEXT input"),
    ],
)
@pytest.mark.parametrize("padding", ["request", "batch"])
def test_a_request_of_the_wrong_shape_gets_its_own_error(
    load_model, padding: str, request_: dict[str, np.ndarray], message: str
) -> None:
    model = load_model(padding)

    good, bad, other = model.execute([_request("Fine text."), request_, _request("Also fine.")])

    assert message in bad.error.message and bad.error.code == FakeError.INVALID_ARG and bad.output_tensors == []
    np.testing.assert_array_equal(good.outputs()["input_ids"], minilm.tokenize(["Fine text."])["input_ids"])
    assert other.error is None


@pytest.mark.parametrize("padding", ["request", "batch"])
def test_every_error_response_gets_its_own_error_object(load_model, padding: str) -> None:
    """The python backend's stub frees a TritonError's shared memory when the same object is sent twice."""
    model = load_model(padding)
    bad = [_request(b"\xff"), {"TEXT": np.empty((0, 1), dtype=object)}, _request(b"\xfe"), {}]

    responses = model.execute(bad)

    errors = [r.error for r in responses]
    assert all(error is not None for error in errors)
    assert len({id(error) for error in errors}) == len(errors)


def test_batch_padding_falls_back_to_each_request_alone_when_the_merged_encode_fails(
    load_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model("batch")
    namespace = type(model).execute.__globals__
    real_encode = namespace["encode"]

    def encode(tokenizer: Any, texts: list[str]) -> Any:
        if "poison" in texts:
            raise RuntimeError("tokenizer broke")
        return real_encode(tokenizer, texts)

    monkeypatch.setitem(namespace, "encode", encode)

    first, bad, last = model.execute([_request("Hi."), _request("poison"), _request("A longer sentence here.")])

    assert "RuntimeError: tokenizer broke" in bad.error.message and bad.error.code == FakeError.INTERNAL
    np.testing.assert_array_equal(first.outputs()["input_ids"], minilm.tokenize(["Hi."])["input_ids"])
    np.testing.assert_array_equal(
        last.outputs()["input_ids"], minilm.tokenize(["A longer sentence here."])["input_ids"]
    )
