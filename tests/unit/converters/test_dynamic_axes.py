from __future__ import annotations

from pathlib import Path

import pytest
import torch
from converter_models import baked_length, snapshot, token_pool
from torch import nn

from tritonforge.converters.export import export_to_repository
from tritonforge.converters.onnx_graph import read_onnx_signature
from tritonforge.converters.specs import TensorSpec, default_axis_sizes
from tritonforge.errors import ConfigError, ParityError

MASK = TensorSpec(name="attention_mask", shape=(-1,), dtype="int64", axis_names=("seq",), value_range=(0, 1))
IDS = TensorSpec(name="input_ids", shape=(-1,), dtype="int64", axis_names=("seq",), value_range=(0, 99))


def _export(tmp_path: Path, model: nn.Module, inputs: list[TensorSpec], **kwargs):
    return export_to_repository(
        model=model, inputs=inputs, repository=tmp_path / "repo", model_name="m", source="t", **kwargs
    )


def test_a_named_axis_is_one_symbolic_dim_shared_by_the_inputs_that_name_it(tmp_path: Path) -> None:
    exported = _export(tmp_path, token_pool(), [IDS, MASK])

    graph = read_onnx_signature(exported.onnx_path)
    assert [t.dim_names for t in graph.inputs] == [("batch", "seq"), ("batch", "seq")]
    config = (exported.model_dir / "config.pbtxt").read_text()
    assert config.count("dims: -1") == 2
    assert [t.dims for t in exported.signature.inputs] == [("seq",), ("seq",)]
    assert exported.manifest["signature"]["inputs"][0]["shape"] == ["batch", "seq"]


def test_the_gate_tries_every_axis_size_at_batch_one_and_above(tmp_path: Path) -> None:
    report = _export(tmp_path, token_pool(), [IDS, MASK]).parity

    assert report.axis_sizes == (("seq", (1, 7, 33), 7),)
    assert {(r.batch_size, dict(r.axes)["seq"]) for r in report.results} == {(b, s) for b in (1, 8) for s in (1, 7, 33)}
    manifest_axes = report.to_dict()["axes"]
    assert manifest_axes == {"seq": {"sizes": [1, 7, 33], "typical": 7}}


def test_a_baked_sequence_length_is_refused_and_named_like_a_baked_batch(tmp_path: Path) -> None:
    # Before every dynamic axis was varied, this model passed the gate (all inputs had the traced length) and was
    # wrong or failing at every other length once served.
    repository = tmp_path / "repo"
    with pytest.raises(ParityError) as caught:
        _export(tmp_path, baked_length(), [IDS, MASK])

    message = str(caught.value)
    assert "axis 'seq' looks baked into the graph: passes at 7, fails at [1, 33]" in message
    assert "x.size(1)" in message and "int(x.shape[1])" in message and "\n" not in message
    assert not repository.exists()


def test_axis_sizes_choose_what_the_gate_tries_and_the_middle_one_is_traced(tmp_path: Path) -> None:
    report = _export(tmp_path, token_pool(), [IDS, MASK], axis_sizes={"seq": (2, 16, 64)}).parity

    assert report.axis_sizes == (("seq", (2, 16, 64), 16),)
    assert {dict(r.axes)["seq"] for r in report.results} == {2, 16, 64}


def test_axis_sizes_name_the_known_axes_when_an_unknown_one_is_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no dynamic axis 'len'; their dynamic axes: seq"):
        _export(tmp_path, token_pool(), [IDS, MASK], axis_sizes={"len": (1, 2)})


def test_the_typical_size_avoids_the_model_s_static_dims() -> None:
    specs = [
        TensorSpec(name="x", shape=(-1, 7, 8), dtype="float32"),
        TensorSpec(name="y", shape=(-1,), dtype="float32", axis_names=("t",)),
    ]
    sizes = default_axis_sizes(specs, reserved=(2,))
    assert sizes == {"x_dim1": (1, 9, 33), "t": (1, 10, 34)}


class NeedsThree(nn.Module):
    """A convolution over the sequence without padding: the torch model itself needs at least 3 steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(2, 4, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(-1)


def test_a_torch_model_that_fails_at_a_size_says_to_choose_sizes_with_axis(tmp_path: Path) -> None:
    spec = TensorSpec(name="x", shape=(2, -1), dtype="float32", axis_names=(None, "t"))
    repository = tmp_path / "repo"
    with pytest.raises(ParityError) as caught:
        _export(tmp_path, NeedsThree(), [spec])
    assert "the torch model itself fails at batch 1, t 1" in str(caught.value)
    assert "--axis t=S1,S2,S3" in str(caught.value)
    before = snapshot(repository)

    exported = _export(tmp_path, NeedsThree(), [spec], axis_sizes={"t": (3, 8, 40)})
    assert exported.parity.passed and before == {}


def test_inputs_that_need_one_size_are_told_to_share_an_axis_name(tmp_path: Path) -> None:
    unshared = [
        TensorSpec(name="input_ids", shape=(-1,), dtype="int64", value_range=(0, 99)),
        TensorSpec(name="attention_mask", shape=(-1,), dtype="int64", value_range=(0, 1)),
    ]
    with pytest.raises(ConfigError, match="share an axis need one axis name in place of -1"):
        _export(tmp_path, token_pool(), unshared)


class ShortPositions(nn.Module):
    """Token plus position embeddings with 20 positions: longer sequences fail in torch, whatever the ids."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tokens = nn.Embedding(100, 4)
        self.positions = nn.Embedding(20, 4)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(input_ids.size(1)).unsqueeze(0)
        return (self.tokens(input_ids) + self.positions(steps)).mean(1)


def test_a_size_beyond_the_model_s_positions_is_blamed_on_the_size_not_the_values(tmp_path: Path) -> None:
    with pytest.raises(ParityError) as caught:
        _export(tmp_path, ShortPositions(), [IDS])

    message = str(caught.value)
    assert "the torch model itself fails at batch 1, seq 33" in message and "--axis seq=S1,S2,S3" in message
    assert "values" not in message


def test_a_trace_size_beyond_the_model_s_positions_says_to_choose_sizes_with_axis(tmp_path: Path) -> None:
    class FivePositions(ShortPositions):
        def __init__(self) -> None:
            super().__init__()
            self.positions = nn.Embedding(5, 4)  # the typical size 7 is already too long

    with pytest.raises(ConfigError) as caught:
        _export(tmp_path, FivePositions(), [IDS])
    message = str(caught.value)
    assert "at the trace sizes {'seq': 7}" in message and "--axis seq=S1,S2,S3" in message
    assert "values" not in message

    assert _export(tmp_path, FivePositions(), [IDS], axis_sizes={"seq": (1, 3, 5)}).parity.passed
