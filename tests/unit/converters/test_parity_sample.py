from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tritonforge.converters.export import export_to_repository
from tritonforge.converters.parity import check_parity
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.torch2onnx import export_torch_to_onnx
from tritonforge.errors import ConfigError, ParityError

IDS = TensorSpec(name="ids", shape=(-1,), dtype="int64")


class BakedSequence(nn.Module):
    """Pools token embeddings, but int(ids.size(1)) freezes the traced sequence length into a Reshape."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids).reshape(-1, int(ids.size(1)), 4).mean(1)


class Embed(nn.Module):
    """An embedding whose forward takes `ids` (nn.Embedding's own parameter is called `input`)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids)


def _sample_of_length(length: int):
    def sample(batch_size: int) -> dict[str, np.ndarray]:
        return {"ids": (np.arange(batch_size * length) % 10).reshape(batch_size, length).astype(np.int64)}

    return sample


@pytest.fixture
def baked_onnx(tmp_path: Path) -> Path:
    return export_torch_to_onnx(model=BakedSequence(), inputs=[IDS], output_path=tmp_path / "m.onnx")


def test_check_parity_names_a_baked_sequence_length_when_inputs_are_random(baked_onnx: Path) -> None:
    # Before every dynamic axis was varied, random inputs all had the traced length and this passed.
    with pytest.raises(ParityError) as caught:
        check_parity(model=BakedSequence(), onnx_path=baked_onnx, inputs=[IDS])

    message = str(caught.value)
    assert "axis 'ids_dim1' looks baked into the graph: passes at 7, fails at [1, 33]" in message
    assert "int(x.shape[1])" in message and "\n" not in message
    assert "batch" not in message.split(":")[1]  # the batch is not blamed: it passes at the typical length


def test_check_parity_catches_a_baked_sequence_length_that_a_real_sample_exposes(baked_onnx: Path) -> None:
    with pytest.raises(ParityError, match="parity gate failed for m.onnx"):
        check_parity(model=BakedSequence(), onnx_path=baked_onnx, inputs=[IDS], sample=_sample_of_length(7))


def test_check_parity_runs_on_the_sample_when_given(tmp_path: Path) -> None:
    model = Embed()
    onnx_path = export_torch_to_onnx(model=model, inputs=[IDS], output_path=tmp_path / "e.onnx")
    seen: list[int] = []

    def sample(batch_size: int) -> dict[str, np.ndarray]:
        seen.append(batch_size)
        return _sample_of_length(5)(batch_size)

    report = check_parity(model=model, onnx_path=onnx_path, inputs=[IDS], batch_sizes=(1, 4), sample=sample)

    assert report.passed and seen[-2:] == [1, 4]  # seen[0]: the typical (trace) length comes from sample(2)
    assert report.axis_sizes == (("ids_dim1", (1, 5, 33), 5),)
    sizes = {(r.batch_size, dict(r.axes)["ids_dim1"]) for r in report.results}
    assert sizes == {(1, 1), (4, 1), (1, 5), (4, 5), (1, 33), (4, 33)}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"other": np.zeros((1, 3), np.int64)}, r"returned inputs \['other'\]; the model's inputs are \['ids'\]"),
        ({"ids": np.zeros((2, 3), np.int64)}, "must be int64 with 2 axes and batch size 1 first"),
        ({"ids": np.zeros((1, 3), np.int32)}, "input 'ids' is int32"),
        ({"ids": np.zeros((1,), np.int64)}, "must be int64 with 2 axes"),
    ],
)
def test_check_parity_raises_config_error_when_the_sample_does_not_fit_the_specs(
    tmp_path: Path, arrays: dict, message: str
) -> None:
    model = Embed()
    onnx_path = export_torch_to_onnx(model=model, inputs=[IDS], output_path=tmp_path / "e.onnx")

    with pytest.raises(ConfigError, match=message):
        check_parity(model=model, onnx_path=onnx_path, inputs=[IDS], batch_sizes=(1,), sample=lambda _: arrays)


def test_export_to_repository_gates_on_the_sample_and_says_so_in_the_manifest(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    with pytest.raises(ParityError):
        export_to_repository(
            model=BakedSequence(), inputs=[IDS], repository=repository, model_name="pool", source="t",
            sample=_sample_of_length(6),
        )  # fmt: skip
    assert not repository.exists()

    exported = export_to_repository(
        model=Embed(), inputs=[IDS], repository=repository, model_name="emb", source="t",
        sample=_sample_of_length(6),
    )  # fmt: skip
    manifest = json.loads((exported.model_dir / "1" / "manifest.json").read_text())
    assert manifest["export"]["parity_inputs"] == "caller's sample()"
