"""`repo check` refuses, offline, what Triton refuses when it loads a model: one test per rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonforge.converters.export import ExportedVersion
from tritonforge.converters.repo_check import check_repository
from tritonforge.converters.triton_config import read_config, write_config

Edit = Callable[[model_config_pb2.ModelConfig], None]


def _edit_config(model_dir: Path, edit: Edit) -> None:
    config = read_config(model_dir / "config.pbtxt")
    edit(config)
    write_config(config, model_dir / "config.pbtxt")


def _messages(repository: Path) -> list[str]:
    return [str(finding) for finding in check_repository(repository)]


def _set_reshape(shape: list[int]) -> Edit:
    def edit(config: model_config_pb2.ModelConfig) -> None:
        config.input[0].reshape.shape[:] = shape

    return edit


def _no_batching_with_empty_reshape(config: model_config_pb2.ModelConfig) -> None:
    config.max_batch_size = 0
    config.ClearField("dynamic_batching")
    config.input[0].reshape.SetInParent()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: setattr(c.input[0], "name", ""), "input #1 has no name; every input needs one"),
        (lambda c: c.output.append(c.output[0]), "output name 'logits' appears more than once"),
        (lambda c: setattr(c.input[0], "data_type", 0), "input 'image' has no data_type; set one, e.g. TYPE_FP32"),
        (lambda c: c.input[0].ClearField("dims"), "input 'image' has no dims; give its shape without the batch axis"),
        (lambda c: c.input[0].dims.__setitem__(0, 0), "input 'image': dim 0 in [0, 8, 8] is not allowed"),
        (lambda c: c.output[0].dims.__setitem__(0, -2), "output 'logits': dim -2 in [-2] is not allowed"),
        (_set_reshape([1, 8, 9]), "input 'image': reshape [1, 8, 9] does not hold the same elements as dims [1, 8, 8]"),
        (_set_reshape([1, 0, 8]), "input 'image': reshape dim 0 in [1, 0, 8] is not allowed"),
        (_no_batching_with_empty_reshape, "an empty reshape needs max_batch_size >= 1"),
        (lambda c: c.dynamic_batching.preferred_batch_size.append(0), "preferred_batch_size 0 must be >= 1"),
        (
            lambda c: c.input[0].dims.insert(0, -1),
            "with max_batch_size 64 the dims leave the batch axis out: [1, 8, 8]",
        ),
    ],
)
def test_check_repository_reports_what_triton_refuses_at_load_when_an_input_or_output_is_malformed(
    exported: ExportedVersion, repository: Path, edit: Edit, expected: str
) -> None:
    _edit_config(exported.model_dir, edit)
    messages = _messages(repository)
    assert any(expected in m for m in messages), messages


def _python_model(root: Path, dims: list[int], reshape: list[int]) -> Path:
    config = text_format.Parse(
        'name: "m" backend: "python" max_batch_size: 4 output { name: "y" data_type: TYPE_FP32 dims: 1 }',
        model_config_pb2.ModelConfig(),
    )
    entry = config.input.add(name="x", data_type=model_config_pb2.TYPE_FP32, dims=dims)
    entry.reshape.shape[:] = reshape
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.py").write_text("# python backend\n", encoding="utf-8")
    write_config(config, root / "m" / "config.pbtxt")
    return root


def test_check_repository_accepts_reshape_whose_runs_between_variable_dims_match(tmp_path: Path) -> None:
    # Triton's own example: [2, 4, -1, 6] -> [8, -1, 1, 6] (2 * 4 = 8 and 6 = 1 * 6).
    assert _messages(_python_model(tmp_path / "a", [2, 4, -1, 6], [8, -1, 1, 6])) == []
    assert _messages(_python_model(tmp_path / "b", [1], [])) == []
    assert any(
        "reshape [8, -1, 2, 6] does not hold the same elements as dims [2, 4, -1, 6]" in m
        for m in _messages(_python_model(tmp_path / "c", [2, 4, -1, 6], [8, -1, 2, 6]))
    )
    assert any(
        "reshape [-1, -1] does not hold" in m for m in _messages(_python_model(tmp_path / "d", [-1, 4], [-1, -1]))
    )


def test_check_repository_accepts_config_without_name_and_refuses_other_name(
    exported: ExportedVersion, repository: Path
) -> None:
    _edit_config(exported.model_dir, lambda c: c.ClearField("name"))
    assert _messages(repository) == []

    _edit_config(exported.model_dir, lambda c: setattr(c, "name", "digits_v2"))
    assert _messages(repository) == [
        f"{exported.model_dir / 'config.pbtxt'}: config name 'digits_v2' differs from its folder 'digits'; "
        "Triton needs them equal"
    ]


def test_check_repository_reports_version_folders_triton_ignores(exported: ExportedVersion, repository: Path) -> None:
    (exported.model_dir / "v2").mkdir()
    (exported.model_dir / "02").mkdir()

    messages = _messages(repository)

    assert f"{exported.model_dir / 'v2'}: folder 'v2' is not a version number; Triton ignores it" in messages[1]
    assert "version folder '02' is ignored here; name versions 1, 2, ... without leading zeros" in messages[0]
    assert len(messages) == 2


def test_check_repository_reports_missing_label_file(exported: ExportedVersion, repository: Path) -> None:
    _edit_config(exported.model_dir, lambda c: setattr(c.output[0], "label_filename", "labels.txt"))
    assert _messages(repository) == [
        f"{exported.model_dir / 'labels.txt'}: output 'logits' names label file 'labels.txt', which is missing"
    ]

    (exported.model_dir / "labels.txt").write_text("\n".join(str(d) for d in range(10)), encoding="utf-8")
    assert _messages(repository) == []


_TOKENIZER = (
    'name: "tokenizer" backend: "python" max_batch_size: 8 '
    'input { name: "TEXT" data_type: TYPE_STRING dims: 1 } '
    'output { name: "input_ids" data_type: TYPE_INT64 dims: -1 } '
    'output { name: "attention_mask" data_type: TYPE_INT64 dims: -1 }'
)
_ENCODER = (
    'name: "encoder" backend: "python" max_batch_size: 8 '
    'input { name: "input_ids" data_type: TYPE_INT64 dims: -1 } '
    'input { name: "attention_mask" data_type: TYPE_INT64 dims: -1 } '
    'output { name: "embedding" data_type: TYPE_FP32 dims: 4 }'
)
_ENSEMBLE = (
    'name: "text" platform: "ensemble" max_batch_size: 8 '
    'input { name: "TEXT" data_type: TYPE_STRING dims: 1 } '
    'output { name: "EMBEDDING" data_type: TYPE_FP32 dims: 4 } '
    "ensemble_scheduling { "
    'step { model_name: "tokenizer" model_version: -1 input_map { key: "TEXT" value: "TEXT" } '
    'output_map { key: "input_ids" value: "ids" } output_map { key: "attention_mask" value: "mask" } } '
    'step { model_name: "encoder" model_version: -1 input_map { key: "input_ids" value: "ids" } '
    'input_map { key: "attention_mask" value: "mask" } output_map { key: "embedding" value: "EMBEDDING" } } }'
)


def _text_repository(root: Path, ensemble: str = _ENSEMBLE) -> Path:
    for name, text in (("tokenizer", _TOKENIZER), ("encoder", _ENCODER), ("text", ensemble)):
        (root / name / "1").mkdir(parents=True)
        if name != "text":
            (root / name / "1" / "model.py").write_text("# python backend\n", encoding="utf-8")
        write_config(text_format.Parse(text, model_config_pb2.ModelConfig()), root / name / "config.pbtxt")
    return root


def test_check_repository_accepts_an_ensemble_whose_data_flow_is_complete(tmp_path: Path) -> None:
    assert _messages(_text_repository(tmp_path)) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'key: "attention_mask" value: "mask" } output_map { key: "embedding"',
            'key: "mask" value: "mask" } output_map { key: "embedding"',
            "ensemble step 2 (model 'encoder'): input_map names input 'mask', which the model does not have "
            "(inputs: attention_mask, input_ids)",
        ),
        (
            'input_map { key: "attention_mask" value: "mask" }',
            'input_map { key: "attention_mask" value: "attn" }',
            "ensemble step(s) read tensor 'attn', which is neither an ensemble input nor any step's output",
        ),
        ('value: "EMBEDDING"', 'value: "EMB"', "ensemble output 'EMBEDDING' is written by no step"),
        (
            'input { name: "TEXT" data_type: TYPE_STRING dims: 1 }',
            'input { name: "TEXT" data_type: TYPE_STRING dims: 1 } '
            'input { name: "LANG" data_type: TYPE_STRING dims: 1 }',
            "ensemble input 'LANG' is read by no step",
        ),
        (
            'input_map { key: "attention_mask" value: "mask" } ',
            "",
            "ensemble tensor 'mask' is written but neither read by a step nor an ensemble output",
        ),
        (
            "max_batch_size: 8 ",
            "max_batch_size: 8 instance_group { kind: KIND_CPU } ",
            "an ensemble takes no instance_group",
        ),
    ],
)
def test_check_repository_reports_ensemble_problems_triton_refuses(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in _ENSEMBLE
    messages = _messages(_text_repository(tmp_path, _ENSEMBLE.replace(old, new, 1)))
    assert any(expected in m for m in messages), messages


def test_check_repository_reports_ensemble_platform_without_scheduling(tmp_path: Path) -> None:
    ensemble = _ENSEMBLE[: _ENSEMBLE.index("ensemble_scheduling")]
    messages = _messages(_text_repository(tmp_path, ensemble))
    assert any("platform 'ensemble' needs ensemble_scheduling" in m for m in messages), messages


def test_check_repository_names_model_file_under_another_name_when_default_file_is_missing(
    exported: ExportedVersion, repository: Path
) -> None:
    exported.onnx_path.rename(exported.onnx_path.with_name("resnet.onnx"))

    messages = _messages(repository)

    assert messages == [
        f"{exported.onnx_path}: model file is missing; Triton loads model.onnx from each version folder, this one has "
        "resnet.onnx: rename it, or set default_model_filename"
    ]
