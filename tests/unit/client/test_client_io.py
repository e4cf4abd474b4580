from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from client_fakes import DIGITS, MAX_BATCH, FakeTriton, fake_logits

from tritonforge.client import InferJob, InputSpec, OutputFormat, TensorInfo, render_outputs, run_infer_job
from tritonforge.client.io import format_json, format_table, load_array, resolve_inputs, served_signature
from tritonforge.errors import ConfigError, InvalidInputError, ModelNotReadyError
from tritonforge.signature import SignatureTensor

IMAGE = TensorInfo("image", "FP32", (-1, 1, 8, 8))


def test_load_array_keeps_dtype_when_file_is_npy(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.arange(6, dtype=np.int16).reshape(2, 3))
    array = load_array(path, dtype=np.dtype(np.float32))
    assert array.dtype == np.int16
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_load_array_casts_to_model_dtype_when_file_is_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[[1, 2.5], [3, 4]]")
    array = load_array(path, dtype=np.dtype(np.float32))
    assert array.dtype == np.float32
    assert array.shape == (2, 2)


def test_load_array_raises_config_error_when_json_ragged(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[[1, 2], [3]]")
    with pytest.raises(ConfigError, match="cannot read an array from .*x.json"):
        load_array(path, dtype=np.dtype(np.float32))


def test_load_array_raises_config_error_when_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.npy does not exist"):
        load_array(tmp_path / "missing.npy")


def test_load_array_raises_config_error_when_npy_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(b"not numpy")
    with pytest.raises(ConfigError, match="cannot read an array"):
        load_array(path)


def test_input_spec_parses_name_and_path_when_given_name_equals_path() -> None:
    assert InputSpec.parse("image=data/x.npy") == InputSpec(name="image", path=Path("data/x.npy"))
    assert InputSpec.parse("x.json") == InputSpec(name=None, path=Path("x.json"))


@pytest.mark.parametrize("text", ["image=", "=x.npy", "image=x.txt", "x.csv"])
def test_input_spec_raises_config_error_when_malformed(text: str) -> None:
    with pytest.raises(ConfigError):
        InputSpec.parse(text)


def test_resolve_inputs_uses_only_input_name_when_name_omitted(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    arrays = resolve_inputs([InputSpec.parse(str(tmp_path / "x.npy"))], [IMAGE], model="digits")
    assert list(arrays) == ["image"]


def test_resolve_inputs_asks_for_names_when_model_has_several_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 3), np.int64))
    two = [TensorInfo("ids", "INT64", (-1, -1)), TensorInfo("mask", "INT64", (-1, -1))]
    with pytest.raises(InvalidInputError, match=r"has 2 inputs \['ids', 'mask'\]; name each"):
        resolve_inputs([InputSpec.parse(str(tmp_path / "x.npy"))], two, model="bert")


def test_resolve_inputs_prepends_batch_dim_when_asked(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps(np.zeros((1, 8, 8)).tolist()))
    spec = InputSpec.parse(f"image={tmp_path / 'one.json'}")
    arrays = resolve_inputs([spec], [IMAGE], model="digits", add_batch_dim=True)
    assert arrays["image"].shape == (1, 1, 8, 8)
    assert arrays["image"].dtype == np.float32


def test_resolve_inputs_suggests_add_batch_dim_when_file_holds_one_item(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps(np.zeros((1, 8, 8)).tolist()))
    with pytest.raises(InvalidInputError, match="add --add-batch-dim"):
        resolve_inputs([InputSpec.parse(str(tmp_path / "one.json"))], [IMAGE], model="digits")


def test_resolve_inputs_rejects_when_input_given_twice(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    spec = InputSpec.parse(f"image={tmp_path / 'x.npy'}")
    with pytest.raises(InvalidInputError, match="given twice"):
        resolve_inputs([spec, spec], [IMAGE], model="digits")


def test_format_table_shows_argmax_and_top_values_when_output_is_2d() -> None:
    logits = np.array([[0.1, 2.0, -1.0], [5.0, 0.0, 4.0]], np.float32)
    lines = format_table({"logits": logits}, top_k=2).splitlines()
    assert lines[0] == "logits: float32 [2, 3]"
    assert "argmax" in lines[1]
    assert lines[2].split()[:2] == ["0", "1"]
    assert "1: 2" in lines[2] and "0: 0.1" in lines[2]
    assert lines[3].split()[:2] == ["1", "0"]
    assert "2: 4" in lines[3]


def test_format_table_truncates_rows_when_batch_is_long() -> None:
    text = format_table({"logits": np.zeros((100, 10), np.float32)})
    assert "68 more rows" in text
    assert len(text.splitlines()) < 40


def test_format_table_summarizes_when_output_is_large_and_not_2d() -> None:
    text = format_table({"embedding": np.ones((2, 4, 8), np.float32)})
    assert "embedding: float32 [2, 4, 8]" in text
    assert "min 1  max 1  mean 1" in text


def test_format_table_prints_values_when_output_is_small() -> None:
    text = format_table({"label": np.array([b"cat", b"dog"], dtype=object)})
    assert "cat" in text and "dog" in text


def test_format_json_round_trips_values_when_parsed() -> None:
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    document = json.loads(format_json({"logits": logits, "label": np.array([b"a"], dtype=object)}))
    assert document["outputs"]["logits"] == {"dtype": "float32", "shape": [2, 3], "data": logits.tolist()}
    assert document["outputs"]["label"]["data"] == ["a"]


def test_render_outputs_picks_format_when_asked() -> None:
    outputs = {"y": np.zeros((1, 2), np.float32)}
    assert render_outputs(outputs, fmt=OutputFormat.JSON).startswith("{")
    assert render_outputs(outputs, fmt=OutputFormat.TABLE).startswith("y:")


def test_infer_job_rejects_when_no_inputs() -> None:
    with pytest.raises(ConfigError, match="at least one --input"):
        InferJob(url="x:1", model="digits", inputs=())


def test_run_infer_job_sends_file_contents_when_server_answers(tmp_path: Path, factory, fake: FakeTriton) -> None:
    batch = np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "batch.npy", batch)
    job = InferJob(url="127.0.0.1:8001", model=DIGITS, inputs=(InputSpec.parse(str(tmp_path / "batch.npy")),))
    outputs = run_infer_job(job, transport_factory=factory)
    np.testing.assert_allclose(outputs["logits"], fake_logits(batch))
    assert fake.closed


def test_format_table_shows_integer_class_ids_as_values_not_scores() -> None:
    lines = format_table({"label": np.array([[3], [7]], np.int64)}).splitlines()

    assert lines == ["label: int64 [2, 1]", "  item  values", "     0  3", "     1  7"]


def test_format_table_shows_integer_rows_as_values_when_output_is_token_ids() -> None:
    ids = np.array([[101, 7592, 102, 0], [101, 2088, 999, 102]], np.int32)

    text = format_table({"ids": ids})

    assert "argmax" not in text and "top" not in text
    assert text.splitlines()[2].split() == ["0", "101,", "7592,", "102,", "0"]


def test_format_table_shows_long_integer_vector_as_values_with_a_count_of_the_rest() -> None:
    text = format_table({"counts": np.arange(40, dtype=np.int64)})

    assert "0, 1, 2" in text and "(24 more; use --format json for all)" in text
    assert "mean" not in text


def test_format_table_keeps_argmax_for_float_scores_beside_integer_output() -> None:
    outputs = {"logits": np.array([[0.1, 0.9]], np.float32), "label": np.array([[1]], np.int64)}

    text = format_table(outputs)

    assert "argmax" in text.split("label:")[0]
    assert "argmax" not in text.split("label:")[1]


def test_served_signature_drops_batch_axis_and_names_numpy_dtypes(factory, fake: FakeTriton) -> None:
    signature = served_signature("127.0.0.1:8001", DIGITS, transport_factory=factory)

    assert signature.max_batch_size == MAX_BATCH
    assert signature.inputs == (SignatureTensor(name="image", dtype="float32", dims=(1, 8, 8)),)
    assert signature.outputs == (SignatureTensor(name="logits", dtype="float32", dims=(10,)),)
    assert fake.closed


def test_served_signature_raises_model_not_ready_when_model_unknown(factory) -> None:
    with pytest.raises(ModelNotReadyError):
        served_signature("127.0.0.1:8001", "nope", transport_factory=factory, timeout_s=0.05)
