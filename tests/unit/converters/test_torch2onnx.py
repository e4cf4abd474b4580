from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest
from converter_models import BatchOneCNN, SvdModel, TwoHeads
from torch import nn

from tritonforge.converters.onnx_graph import read_onnx_signature
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.torch2onnx import export_torch_to_onnx
from tritonforge.errors import ConfigError, ConversionError


def test_export_torch_to_onnx_writes_dynamic_batch_axis_when_exporting_a_cnn(
    model: nn.Module, image_spec: TensorSpec, tmp_path: Path
) -> None:
    path = export_torch_to_onnx(
        model=model, inputs=[image_spec], output_path=tmp_path / "out" / "m.onnx", output_names=["logits"]
    )

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    signature = read_onnx_signature(path)
    assert [(t.name, t.dims) for t in signature.inputs] == [("image", (-1, 1, 8, 8))]
    assert [(t.name, t.dims) for t in signature.outputs] == [("logits", (-1, 10))]
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]


def test_export_torch_to_onnx_names_outputs_from_dict_keys_when_names_are_not_given(tmp_path: Path) -> None:
    inputs = [
        TensorSpec(name="ids", shape=(-1,), dtype="int64"),
        TensorSpec(name="features", shape=(3,), dtype="float32"),
    ]
    path = export_torch_to_onnx(model=TwoHeads(), inputs=inputs, output_path=tmp_path / "m.onnx")

    signature = read_onnx_signature(path)
    assert [t.name for t in signature.outputs] == ["scores", "best"]
    assert [t.dtype for t in signature.inputs] == ["int64", "float32"]
    assert signature.inputs[0].dims == (-1, -1)  # the -1 sequence axis stays dynamic


def test_export_torch_to_onnx_skips_when_output_exists_and_overwrite_is_false(
    model: nn.Module, image_spec: TensorSpec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"existing")

    with caplog.at_level(logging.INFO, logger="tritonforge"):
        assert export_torch_to_onnx(model=model, inputs=[image_spec], output_path=path) == path

    assert path.read_bytes() == b"existing"
    assert "skipping" in caplog.text
    export_torch_to_onnx(model=model, inputs=[image_spec], output_path=path, overwrite=True)
    assert onnx.load(str(path)).graph.input[0].name == "image"


@pytest.mark.parametrize("opset", [16, 21])
def test_export_torch_to_onnx_raises_config_error_when_opset_is_out_of_range(
    model: nn.Module, image_spec: TensorSpec, tmp_path: Path, opset: int
) -> None:
    with pytest.raises(ConfigError, match=f"opset {opset}"):
        export_torch_to_onnx(model=model, inputs=[image_spec], output_path=tmp_path / "m.onnx", opset=opset)


def test_export_torch_to_onnx_raises_config_error_when_output_names_do_not_fit(
    model: nn.Module, image_spec: TensorSpec, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="1 unique names"):
        export_torch_to_onnx(model=model, inputs=[image_spec], output_path=tmp_path / "m.onnx", output_names=["a", "b"])


def test_export_torch_to_onnx_raises_config_error_when_input_shape_is_wrong(model: nn.Module, tmp_path: Path) -> None:
    spec = TensorSpec(name="image", shape=(3, 8, 8), dtype="float32")
    with pytest.raises(ConfigError, match=r"example inputs of shape \(2, 3, 8, 8\)"):
        export_torch_to_onnx(model=model, inputs=[spec], output_path=tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_export_torch_to_onnx_reports_baked_batch_when_the_model_only_runs_at_batch_one(
    image_spec: TensorSpec, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="runs at batch 1 but fails at batch 2.*baked into the graph.*flatten"):
        export_torch_to_onnx(model=BatchOneCNN(), inputs=[image_spec], output_path=tmp_path / "m.onnx")


def test_export_torch_to_onnx_raises_conversion_error_with_log_and_repro_when_an_op_is_unsupported(
    tmp_path: Path,
) -> None:
    spec = TensorSpec(name="x", shape=(3, 3), dtype="float32")
    with pytest.raises(ConversionError, match="linalg_svd") as caught:
        export_torch_to_onnx(
            model=SvdModel(), inputs=[spec], output_path=tmp_path / "m.onnx", source="converter_models:svd"
        )

    assert caught.value.log_path is not None and "Traceback" in caught.value.log_path.read_text()
    assert caught.value.repro_cmd is not None
    assert "export converter_models:svd --input x:3x3:float32 --opset 17" in caught.value.repro_cmd
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file
    caught.value.log_path.unlink()
