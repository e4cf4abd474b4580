from __future__ import annotations

from pathlib import Path

import pytest
import torch
from converter_models import BakedBatchCNN, TinyCNN
from torch import nn

from tritonforge.converters.parity import check_parity
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.torch2onnx import export_torch_to_onnx
from tritonforge.errors import ConfigError, ParityError


@pytest.fixture
def onnx_path(model: nn.Module, image_spec: TensorSpec, tmp_path: Path) -> Path:
    return export_torch_to_onnx(model=model, inputs=[image_spec], output_path=tmp_path / "m.onnx", output_names=["y"])


def test_check_parity_passes_with_small_errors_when_onnx_matches_torch(
    model: nn.Module, onnx_path: Path, image_spec: TensorSpec
) -> None:
    report = check_parity(model=model, onnx_path=onnx_path, inputs=[image_spec])

    assert report.passed
    assert [(r.output, r.batch_size) for r in report.results] == [("y", 1), ("y", 8)]
    assert all(r.max_abs_err < 1e-5 for r in report.results)
    assert report.to_dict()["results"][1]["batch_size"] == 8


def test_check_parity_raises_parity_error_with_numbers_when_the_onnx_file_is_another_model(
    onnx_path: Path, image_spec: TensorSpec
) -> None:
    torch.manual_seed(1)
    other = TinyCNN()  # same architecture, different weights: honest disagreement

    with pytest.raises(ParityError, match=r"output 'y' at batch 1: max abs err [\d.e+-]+ \(atol 0.0001\)") as caught:
        check_parity(model=other, onnx_path=onnx_path, inputs=[image_spec])

    assert "baked" not in str(caught.value)  # every batch size disagrees: a numeric problem, not a batch one


def test_check_parity_reports_baked_in_batch_when_a_reshape_constant_breaks_other_batch_sizes(
    image_spec: TensorSpec, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    baked = BakedBatchCNN()  # eager torch runs at any batch; the trace keeps Reshape(2, -1)
    path = export_torch_to_onnx(model=baked, inputs=[image_spec], output_path=tmp_path / "m.onnx")

    with pytest.raises(ParityError) as caught:
        check_parity(model=baked, onnx_path=path, inputs=[image_spec], batch_sizes=(1, 2, 8))

    message = str(caught.value)
    assert "ONNX Runtime fails at batch 1" in message and "ONNX Runtime fails at batch 8" in message
    assert "passes at batch [2], fails at batch [1, 8]" in message
    assert "baked into the graph" in message and "x.flatten(1)" in message
    assert "\n" not in message


def test_check_parity_reports_batch_axis_when_torch_output_mixes_the_batch(
    image_spec: TensorSpec, tmp_path: Path
) -> None:
    class SumsTheBatch(nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return image.reshape(1, -1).sum(1)

    model = SumsTheBatch()
    path = export_torch_to_onnx(model=model, inputs=[image_spec], output_path=tmp_path / "m.onnx")

    with pytest.raises(ParityError, match=r"baked.*at batch 8 has shape \(1,\); the batch axis must come first"):
        check_parity(model=model, onnx_path=path, inputs=[image_spec])


@pytest.mark.parametrize(("kwargs", "message"), [({"batch_sizes": ()}, "batch_sizes"), ({"atol": -1.0}, "atol=-1")])
def test_check_parity_raises_config_error_when_settings_are_invalid(
    model: nn.Module, onnx_path: Path, image_spec: TensorSpec, kwargs: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_parity(model=model, onnx_path=onnx_path, inputs=[image_spec], **kwargs)
