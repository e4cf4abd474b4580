from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from converter_models import FP32, INT64, identity_onnx
from tritonclient.grpc import model_config_pb2

from tritonforge.converters.export import ExportedVersion
from tritonforge.converters.repo_check import check_repository
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import ModelConfigSpec, build_model_config, read_config, write_config
from tritonforge.errors import ConfigError

Edit = Callable[[model_config_pb2.ModelConfig], None]


def _edit_config(model_dir: Path, edit: Edit) -> None:
    config = read_config(model_dir / "config.pbtxt")
    edit(config)
    write_config(config, model_dir / "config.pbtxt")


def _messages(repository: Path) -> list[str]:
    return [str(finding) for finding in check_repository(repository)]


def test_check_repository_finds_nothing_when_the_repository_was_just_exported(
    exported: ExportedVersion, repository: Path
) -> None:
    findings = check_repository(repository)
    assert list(findings) == []
    assert (findings.model_count, findings.version_count) == (1, 1)


def test_check_repository_reports_missing_model_file_when_a_version_lost_it(
    exported: ExportedVersion, repository: Path
) -> None:
    exported.onnx_path.unlink()
    findings = check_repository(repository)
    assert len(findings) == 1
    assert (findings[0].model, findings[0].version, findings[0].path) == ("digits", 1, exported.onnx_path)
    assert str(findings[0]) == f"{exported.onnx_path}: model file is missing; re-export"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: setattr(c.input[0], "name", "pixels"),
            "input 'pixels' is not in the ONNX graph (graph inputs: image)",
        ),
        (lambda c: setattr(c.output[0], "name", "probs"), "output 'probs' is not in the ONNX graph"),
        (
            lambda c: setattr(c.input[0], "data_type", model_config_pb2.TYPE_FP16),
            "input 'image': config data_type TYPE_FP16 but the graph has TYPE_FP32",
        ),
        (
            lambda c: c.output[0].dims.__setitem__(0, 12),
            "output 'logits': config dims [12] do not match the graph's [10] (batch axis removed)",
        ),
        (lambda c: c.input[0].dims.append(1), "input 'image': config dims [1, 8, 8, 1] do not match"),
        (lambda c: setattr(c, "max_batch_size", -3), "max_batch_size -3 must be >= 0"),
        (lambda c: setattr(c, "name", "digits_v2"), "config name 'digits_v2' differs from its folder 'digits'"),
        (lambda c: c.dynamic_batching.preferred_batch_size.append(128), "preferred_batch_size 128 exceeds"),
    ],
)
def test_check_repository_reports_mismatch_when_the_config_disagrees_with_the_graph(
    exported: ExportedVersion, repository: Path, edit: Edit, expected: str
) -> None:
    _edit_config(exported.model_dir, edit)
    messages = _messages(repository)
    assert any(expected in m for m in messages), messages


def test_check_repository_reports_full_shape_when_max_batch_size_is_zero(
    exported: ExportedVersion, repository: Path
) -> None:
    def no_batching(config: model_config_pb2.ModelConfig) -> None:
        config.max_batch_size = 0

    _edit_config(exported.model_dir, no_batching)
    messages = _messages(repository)
    assert any("dynamic_batching needs max_batch_size >= 1" in m for m in messages)
    assert any("input 'image': config dims [1, 8, 8] do not match the graph's [-1, 1, 8, 8]" in m for m in messages)


def _write_model(repository: Path, spec: ModelConfigSpec, graph_inputs: list, graph_outputs: list) -> Path:
    model_dir = repository / spec.name
    identity_onnx(model_dir / "1" / "model.onnx", inputs=graph_inputs, outputs=graph_outputs)
    write_config(build_model_config(spec), model_dir / "config.pbtxt")
    return model_dir


def test_check_repository_reports_bad_max_batch_size_when_the_graph_batch_is_fixed(repository: Path) -> None:
    spec = ModelConfigSpec(
        name="fixed",
        max_batch_size=8,
        inputs=[TensorSpec(name="x", shape=(4,), dtype="float32")],
        outputs=[TensorSpec(name="y", shape=(4,), dtype="float32")],
    )
    _write_model(repository, spec, [("x", [2, 4], FP32)], [("y", [2, 4], FP32)])

    messages = _messages(repository)

    assert len(messages) == 2
    assert "input 'x': max_batch_size 8 needs a dynamic first axis in the graph, which has batch size 2" in messages[0]
    assert "set max_batch_size 0" in messages[0]


def test_check_repository_accepts_fixed_shapes_and_symbolic_dims_when_they_fit(repository: Path) -> None:
    unbatched = ModelConfigSpec(
        name="unbatched",
        max_batch_size=0,
        inputs=[TensorSpec(name="x", shape=(2, 4), dtype="int64")],
        outputs=[TensorSpec(name="y", shape=(2, 4), dtype="int64")],
    )
    _write_model(repository, unbatched, [("x", [2, 4], INT64)], [("y", [2, 4], INT64)])
    sequence = ModelConfigSpec(
        name="sequence",
        max_batch_size=4,
        inputs=[TensorSpec(name="ids", shape=(-1,), dtype="int64")],
        outputs=[TensorSpec(name="out", shape=(16,), dtype="int64")],
    )
    _write_model(repository, sequence, [("ids", ["batch", "seq"], INT64)], [("out", ["batch", "seq"], INT64)])

    assert _messages(repository) == []


def test_check_repository_reports_config_minus_one_when_the_graph_dim_is_fixed(repository: Path) -> None:
    spec = ModelConfigSpec(
        name="m",
        max_batch_size=4,
        inputs=[TensorSpec(name="x", shape=(-1,), dtype="float32")],
        outputs=[TensorSpec(name="y", shape=(3,), dtype="float32")],
    )
    _write_model(repository, spec, [("x", ["b", 3], FP32)], [("y", ["b", 3], FP32)])
    assert _messages(repository) == [
        f"{repository / 'm' / '1' / 'model.onnx'}: input 'x': config dims [-1] do not match the graph's [3] "
        "(batch axis removed)"
    ]


def test_check_repository_reports_graph_input_missing_from_config_when_the_config_omits_it(repository: Path) -> None:
    spec = ModelConfigSpec(
        name="m",
        max_batch_size=4,
        inputs=[TensorSpec(name="a", shape=(3,), dtype="float32")],
        outputs=[TensorSpec(name="out_a", shape=(3,), dtype="float32")],
    )
    _write_model(
        repository,
        spec,
        [("a", ["b", 3], FP32), ("b", ["b", 3], FP32)],
        [("out_a", ["b", 3], FP32), ("out_b", ["b", 3], FP32)],
    )
    messages = _messages(repository)
    assert len(messages) == 1 and "graph input 'b' is missing from config.pbtxt" in messages[0]


def test_check_repository_reports_file_and_line_when_a_config_does_not_parse(
    exported: ExportedVersion, repository: Path
) -> None:
    config_path = exported.model_dir / "config.pbtxt"
    config_path.write_text(config_path.read_text().replace("max_batch_size: 64", "max_batch_size: sixty-four"))

    findings = check_repository(repository)

    assert len(findings) == 1
    assert str(findings[0]).startswith(f"{config_path}: 8:")
    assert "Couldn't parse integer" in str(findings[0])


def test_check_repository_reports_structure_problems_when_folders_are_incomplete(
    exported: ExportedVersion, repository: Path
) -> None:
    (repository / "empty_model").mkdir()
    (exported.model_dir / ".staging-2-abc").mkdir()
    no_versions = repository / "no_versions"
    no_versions.mkdir()
    (no_versions / "config.pbtxt").write_text(
        (exported.model_dir / "config.pbtxt").read_text().replace('"digits"', '"no_versions"')
    )

    messages = _messages(repository)

    assert f"{repository / 'empty_model'}: no config.pbtxt; generate one with `tritonforge export`" in messages
    assert any(".staging-2-abc: leftover staging folder" in m for m in messages)
    assert f"{no_versions}: no version folders (e.g. 1/); export a version" in messages
    assert len(messages) == 3


def test_check_repository_checks_files_only_when_the_backend_is_not_onnx(repository: Path) -> None:
    spec = ModelConfigSpec(
        name="adapter",
        platform=None,
        backend="python",
        max_batch_size=4,
        inputs=[TensorSpec(name="x", shape=(3,), dtype="float32")],
        outputs=[TensorSpec(name="y", shape=(3,), dtype="float32")],
    )
    (repository / "adapter" / "1").mkdir(parents=True)
    write_config(build_model_config(spec), repository / "adapter" / "config.pbtxt")
    (repository / "adapter" / "2").mkdir()
    (repository / "adapter" / "1" / "model.py").write_text("# python backend model\n")

    assert _messages(repository) == [f"{repository / 'adapter' / '2' / 'model.py'}: model file is missing; re-export"]


def test_check_repository_reports_unreadable_onnx_when_the_model_file_is_corrupt(
    exported: ExportedVersion, repository: Path
) -> None:
    exported.onnx_path.write_bytes(b"\x08\x07garbage")
    messages = _messages(repository)
    assert len(messages) == 1 and "is not a readable ONNX model" in messages[0]


def test_check_repository_raises_config_error_when_the_repository_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        check_repository(tmp_path / "nowhere")


def _plan_model(repository: Path, cc_files: dict[str, str], present: list[str]) -> Path:
    spec = ModelConfigSpec(
        name="digits_trt",
        platform="tensorrt_plan",
        max_batch_size=8,
        inputs=[TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")],
        outputs=[TensorSpec(name="logits", shape=(10,), dtype="float32")],
    )
    config = build_model_config(spec)
    config.cc_model_filenames.update(cc_files)
    model_dir = repository / "digits_trt"
    (model_dir / "1").mkdir(parents=True)
    write_config(config, model_dir / "config.pbtxt")
    for name in present:
        (model_dir / "1" / name).write_bytes(b"engine")
    return model_dir


def test_check_repository_checks_one_engine_per_compute_capability(tmp_path: Path) -> None:
    _plan_model(tmp_path, {"8.0": "model.sm80.plan", "9.0": "model.sm90.plan"}, ["model.sm80.plan", "model.sm90.plan"])
    assert _messages(tmp_path) == []


def test_check_repository_names_the_gpu_type_whose_engine_is_missing(tmp_path: Path) -> None:
    model_dir = _plan_model(tmp_path, {"8.0": "model.sm80.plan", "9.0": "model.sm90.plan"}, ["model.sm80.plan"])
    messages = _messages(tmp_path)
    assert len(messages) == 1
    assert str(model_dir / "1" / "model.sm90.plan") in messages[0]
    assert "compute capability 9.0" in messages[0] and "build-engine" in messages[0]


def test_check_repository_reports_an_ensemble_step_calling_a_missing_model(tmp_path: Path) -> None:
    from google.protobuf import text_format

    model_dir = tmp_path / "text"
    (model_dir / "1").mkdir(parents=True)
    config = text_format.Parse(
        'name: "text" platform: "ensemble" max_batch_size: 8 '
        'input { name: "TEXT" data_type: TYPE_STRING dims: 1 } '
        'output { name: "EMBEDDING" data_type: TYPE_FP32 dims: 384 } '
        'ensemble_scheduling { step { model_name: "tokenizer" model_version: -1 '
        'input_map { key: "TEXT" value: "TEXT" } output_map { key: "EMBEDDING" value: "EMBEDDING" } } }',
        model_config_pb2.ModelConfig(),
    )
    write_config(config, model_dir / "config.pbtxt")
    messages = _messages(tmp_path)
    assert messages == [
        f"{model_dir / 'config.pbtxt'}: ensemble step calls model 'tokenizer', which is not in this repository"
    ]


def test_engines_are_checked_even_when_the_build_also_set_a_default_file(tmp_path: Path) -> None:
    model_dir = _plan_model(tmp_path, {"8.0": "model.sm80.plan", "9.0": "model.sm90.plan"}, ["model.sm90.plan"])
    _edit_config(model_dir, lambda config: setattr(config, "default_model_filename", "model.sm90.plan"))
    messages = _messages(tmp_path)
    assert len(messages) == 1 and "compute capability 8.0" in messages[0]
