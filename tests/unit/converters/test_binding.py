from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from converter_models import token_pool
from torch import nn

from tritonforge.converters.binding import bind_by_name, flatten_outputs
from tritonforge.converters.export import export_to_repository
from tritonforge.converters.onnx_graph import read_onnx_signature
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.torch2onnx import export_torch_to_onnx
from tritonforge.errors import ConfigError

MASK = TensorSpec(name="attention_mask", shape=(-1,), dtype="int64", axis_names=("seq",), value_range=(0, 1))
IDS = TensorSpec(name="input_ids", shape=(-1,), dtype="int64", axis_names=("seq",), value_range=(0, 99))


def _real_tokens(rows: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 100, (rows, length))
    mask = (np.arange(length)[None] < rng.integers(2, length + 1, (rows, 1))).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}


def test_export_binds_inputs_by_name_when_the_specs_list_them_in_another_order(tmp_path: Path) -> None:
    # Before binding by name, this export passed the gate (max abs 6e-08) while the graph input called
    # "input_ids" fed forward's attention_mask: served by name on real tokens, it was off by 1.2.
    model = token_pool()
    exported = export_to_repository(
        model=model, inputs=[MASK, IDS], repository=tmp_path / "repo", model_name="pool", source="t"
    )
    session = ort.InferenceSession(str(exported.onnx_path), providers=["CPUExecutionProvider"])

    for length in (12, 4, 2):
        feeds = _real_tokens(4, length)
        got = session.run(None, feeds)[0]
        want = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).detach().numpy()
        assert np.abs(got - want).max() < 1e-5, length
    assert [t.name for t in read_onnx_signature(exported.onnx_path).inputs] == ["attention_mask", "input_ids"]


def test_export_refuses_an_input_name_that_forward_does_not_take(tmp_path: Path) -> None:
    wrong = TensorSpec(name="ids", shape=(-1,), dtype="int64", axis_names=("seq",))
    with pytest.raises(ConfigError) as caught:
        export_torch_to_onnx(model=token_pool(), inputs=[wrong, MASK], output_path=tmp_path / "m.onnx")

    message = str(caught.value)
    assert "input 'ids' is not a parameter of TokenPool.forward(input_ids" in message and "attention_mask" in message
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_when_a_required_forward_parameter_has_no_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs 'attention_mask', which has no input"):
        export_torch_to_onnx(model=token_pool(), inputs=[IDS], output_path=tmp_path / "m.onnx")


def test_export_accepts_any_name_when_forward_takes_keyword_arguments(tmp_path: Path) -> None:
    class Keywords(nn.Module):
        def forward(self, **tensors: torch.Tensor) -> torch.Tensor:
            return tensors["b"] - 2 * tensors["a"]

    a = TensorSpec(name="a", shape=(3,), dtype="float32")
    b = TensorSpec(name="b", shape=(3,), dtype="float32")
    path = export_torch_to_onnx(model=Keywords(), inputs=[b, a], output_path=tmp_path / "m.onnx")

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ones, twos = np.ones((1, 3), np.float32), np.full((1, 3), 2.0, np.float32)
    assert session.run(None, {"a": ones, "b": twos})[0].tolist() == [[0.0, 0.0, 0.0]]


def test_export_refuses_an_input_that_forward_never_uses(tmp_path: Path) -> None:
    class IgnoresMask(nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return input_ids * 2

    with pytest.raises(ConfigError, match=r"never uses input\(s\) \['attention_mask'\]"):
        export_torch_to_onnx(model=IgnoresMask(), inputs=[IDS, MASK], output_path=tmp_path / "m.onnx")


Pair = collections.namedtuple("Pair", ["scores", "best"])


class _Heads(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> Any:
        scores, best = x * 2, x.argmax(1, keepdim=True)
        if self.kind == "namedtuple":
            return Pair(scores, best)
        if self.kind == "model_output":
            from transformers.modeling_outputs import SequenceClassifierOutput

            return SequenceClassifierOutput(logits=scores)  # loss and hidden_states are None: not outputs
        return {"scores": scores, "extra": (best, best + 1)}


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("namedtuple", ["scores", "best"]),
        ("model_output", ["logits"]),
        ("nested", ["scores", "extra_0", "extra_1"]),
    ],
)
def test_export_names_outputs_after_the_model_when_it_names_them(tmp_path: Path, kind: str, names: list[str]) -> None:
    spec = TensorSpec(name="x", shape=(4,), dtype="float32")
    path = export_torch_to_onnx(model=_Heads(kind), inputs=[spec], output_path=tmp_path / "m.onnx")
    assert [t.name for t in read_onnx_signature(path).outputs] == names


def test_export_lets_output_names_override_the_model_s_when_the_count_fits(tmp_path: Path) -> None:
    spec = TensorSpec(name="x", shape=(4,), dtype="float32")
    path = export_torch_to_onnx(
        model=_Heads("namedtuple"), inputs=[spec], output_path=tmp_path / "m.onnx", output_names=["s", "b"]
    )
    assert [t.name for t in read_onnx_signature(path).outputs] == ["s", "b"]
    with pytest.raises(ConfigError, match="must be 2 unique names"):
        export_torch_to_onnx(
            model=_Heads("namedtuple"), inputs=[spec], output_path=tmp_path / "n.onnx", output_names=["s"]
        )


def test_flatten_outputs_refuses_a_result_that_holds_no_tensor() -> None:
    with pytest.raises(ConfigError, match="holding int"):
        flatten_outputs({"count": 3})
    assert flatten_outputs((torch.zeros(1), torch.ones(1)))[0] is None


def test_bind_by_name_leaves_the_model_itself_unchanged() -> None:
    model = token_pool()
    bound = bind_by_name(model, ["attention_mask", "input_ids"])
    feeds = _real_tokens(2, 5)
    via_bound = bound(torch.from_numpy(feeds["attention_mask"]), torch.from_numpy(feeds["input_ids"]))
    direct = model(
        input_ids=torch.from_numpy(feeds["input_ids"]), attention_mask=torch.from_numpy(feeds["attention_mask"])
    )
    assert isinstance(via_bound, tuple) and torch.equal(via_bound[0], direct)
    assert "forward" not in vars(model)
