"""The signature table: names, dtypes, shapes with the batch axis and symbolic dims, and the batching line."""

from __future__ import annotations

from tritonforge.cli.signature import format_model_signature, format_signature
from tritonforge.signature import ModelSignature, SignatureTensor

IDS = SignatureTensor(name="input_ids", dtype="int64", dims=("seq",))
MASK = SignatureTensor(name="attention_mask", dtype="int64", dims=("seq",))
LOGITS = SignatureTensor(name="logits", dtype="float32", dims=(2,))


def _row(text: str, name: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if name in line.split())


def test_format_signature_shows_batch_axis_and_shared_symbolic_dims_when_model_batches() -> None:
    text = format_signature([IDS, MASK], [LOGITS], max_batch_size=8)

    assert _row(text, "input_ids") == ["input", "input_ids", "int64", "[batch,", "seq]"]
    assert _row(text, "attention_mask") == ["input", "attention_mask", "int64", "[batch,", "seq]"]
    assert _row(text, "logits") == ["output", "logits", "float32", "[batch,", "2]"]
    assert "max batch size 8" in text
    assert "-1" not in text
    assert "\x1b" not in text


def test_format_signature_shows_full_shape_and_explains_minus_one_when_model_does_not_batch() -> None:
    image = SignatureTensor(name="image", dtype="float32", dims=(-1, 1, 8, 8))

    text = format_signature([image], [LOGITS], max_batch_size=0)

    assert _row(text, "image") == ["input", "image", "float32", "[-1,", "1,", "8,", "8]"]
    assert _row(text, "logits")[-1] == "[2]"
    assert "max batch size 0 (no batching" in text
    assert "-1: any size" in text


def test_format_model_signature_titles_model_version_and_platform() -> None:
    signature = ModelSignature(
        name="bert", version="3", platform="onnxruntime_onnx", inputs=(IDS, MASK), outputs=(LOGITS,), max_batch_size=4
    )

    first = format_model_signature(signature).splitlines()[0]

    assert first == "bert version 3 (onnxruntime_onnx)"


def test_model_signature_to_dict_gives_dims_and_full_shapes() -> None:
    signature = ModelSignature(name="bert", inputs=(IDS,), outputs=(LOGITS,), max_batch_size=4)

    data = signature.to_dict()

    assert data["inputs"] == [{"name": "input_ids", "dtype": "int64", "dims": ["seq"], "shape": ["batch", "seq"]}]
    assert data["outputs"][0]["shape"] == ["batch", 2]
    assert data["max_batch_size"] == 4
