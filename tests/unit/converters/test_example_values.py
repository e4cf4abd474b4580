from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from converter_models import TokenPool

from tritonforge.converters.export import export_to_repository
from tritonforge.converters.sample_file import load_sample, load_sample_arrays
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.torch2onnx import export_torch_to_onnx
from tritonforge.errors import ConfigError


def _specs(ids_range: tuple[int, int] | None, mask_range: tuple[int, int] | None = (0, 1)) -> list[TensorSpec]:
    return [
        TensorSpec(name="input_ids", shape=(-1,), dtype="int64", axis_names=("seq",), value_range=ids_range),
        TensorSpec(name="attention_mask", shape=(-1,), dtype="int64", axis_names=("seq",), value_range=mask_range),
    ]


def _small_vocab() -> TokenPool:
    torch.manual_seed(0)
    return TokenPool(vocab=5)  # ids 0..4: the default generated values 0..9 are out of range


def test_a_failure_on_generated_values_says_it_is_the_values_not_the_shapes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        export_torch_to_onnx(model=_small_vocab(), inputs=_specs(None), output_path=tmp_path / "m.onnx")

    message = str(caught.value)
    assert "generated values of integer input(s) ['input_ids']" in message and "not on their shapes" in message
    assert "--input input_ids:seq:int64:0..N-1" in message and "--sample" in message
    assert "check --input shapes" not in message


def test_a_value_range_keeps_generated_ids_inside_the_vocabulary(tmp_path: Path) -> None:
    exported = export_to_repository(
        model=_small_vocab(), inputs=_specs((0, 4)), repository=tmp_path / "repo", model_name="m", source="t"
    )
    assert exported.parity.passed
    assert exported.manifest["export"]["inputs"][0]["value_range"] == [0, 4]


def test_a_sample_traces_the_model_and_lends_its_value_ranges_to_the_generated_sizes(tmp_path: Path) -> None:
    arrays = {
        "input_ids": np.array([[1, 4, 2, 0, 0], [3, 3, 1, 2, 4]], dtype=np.int64),
        "attention_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.int64),
    }
    np.savez(tmp_path / "batch.npz", **arrays)
    specs = _specs(None, None)  # no ranges: the sample's 0..4 and 0..1 serve for the generated inputs
    sample = load_sample(tmp_path / "batch.npz", specs)

    exported = export_to_repository(
        model=_small_vocab(), inputs=specs, repository=tmp_path / "repo", model_name="m", source="t", sample=sample
    )

    assert exported.parity.axis_sizes == (("seq", (1, 5, 33), 5),)  # the sample's length is the typical one
    assert {dict(r.axes)["seq"] for r in exported.parity.results} == {1, 5, 33}
    assert sample(3)["input_ids"].tolist() == [*arrays["input_ids"].tolist(), arrays["input_ids"][0].tolist()]


def test_load_sample_reads_json_and_npy_by_input_name(tmp_path: Path) -> None:
    specs = _specs(None)
    (tmp_path / "s.json").write_text(json.dumps({"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 0]]}))
    arrays = load_sample_arrays(tmp_path / "s.json", specs)
    assert arrays["input_ids"].dtype == np.int64 and arrays["attention_mask"].tolist() == [[1, 1, 0]]

    image = TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float64))
    assert load_sample_arrays(tmp_path / "x.npy", [image])["image"].dtype == np.float32


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("s.npy", np.zeros((1, 3), np.int64), "one .npy array but the model has inputs"),
        ("s.json", {"input_ids": [[1, 2]]}, r"holds \['input_ids'\]; the model's inputs are"),
        ("s.json", {"input_ids": [[1.5, 2]], "attention_mask": [[1, 1]]}, "input 'input_ids' is float64"),
        ("s.json", {"input_ids": [1, 2], "attention_mask": [1, 1]}, "must be \\[batch, seq\\]"),
        ("s.json", {"input_ids": [[1, 2]], "attention_mask": [[1, 1], [1, 0]]}, "different numbers of rows"),
        ("s.txt", "", "must be .npz"),
    ],
)
def test_load_sample_refuses_a_file_that_does_not_fit_the_inputs(
    tmp_path: Path, name: str, content: object, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message):
        load_sample_arrays(path, _specs(None))
