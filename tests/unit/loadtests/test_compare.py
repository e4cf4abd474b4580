import json
from pathlib import Path

import numpy as np
import pytest

from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import ModelConfigSpec, build_model_config, read_config, write_config
from tritonforge.errors import ConfigError
from tritonforge.loadtests.closed_loop import LoopFigures, request_batches
from tritonforge.loadtests.compare import (
    CompareReport,
    CompareRow,
    _comparison_repository,
    find_variants,
    format_compare,
    gate_summary,
)


def _model(repository: Path, name: str, versions: dict[int, dict | None], size: int = 10) -> None:
    spec = ModelConfigSpec(
        name=name,
        max_batch_size=8,
        inputs=[TensorSpec(name="x", shape=(4,), dtype="float32")],
        outputs=[TensorSpec(name="y", shape=(2,), dtype="float32")],
    )
    (repository / name).mkdir(parents=True)
    write_config(build_model_config(spec), repository / name / "config.pbtxt")
    for version, quantization in versions.items():
        folder = repository / name / str(version)
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"x" * size)
        manifest = {"source": "test"} if quantization is None else quantization
        (folder / "manifest.json").write_text(json.dumps(manifest))


def _quantized(source: str, label: str) -> dict:
    return {
        "quantized_from": {"model": source, "version": 1},
        "quantization": {"method": label, "label": label},
        "gate": {"result": {"metric": "cosine", "cosine_mean": 0.99, "cosine_min": 0.98}},
    }


def test_find_variants_takes_the_newest_fp32_version_and_every_variant(tmp_path: Path):
    _model(tmp_path, "enc", {1: None, 2: None, 3: _quantized("enc", "int8-dynamic")}, size=100)
    _model(tmp_path, "enc_int8", {1: _quantized("enc", "int8-dynamic-pc")}, size=30)
    _model(tmp_path, "other_int8", {1: _quantized("other", "int8-dynamic")})
    variants = find_variants(tmp_path, "enc")
    assert [(v.model, v.version, v.label, v.reference) for v in variants] == [
        ("enc", 2, "fp32", True),
        ("enc", 3, "int8-dynamic", False),
        ("enc_int8", 1, "int8-dynamic-pc", False),
    ]
    assert variants[0].size_bytes == 100 and variants[2].size_bytes == 30


def test_find_variants_without_fp32_reference_names_the_fix(tmp_path: Path):
    _model(tmp_path, "enc_int8", {1: _quantized("enc", "int8-dynamic")})
    with pytest.raises(ConfigError, match="no FP32 version"):
        find_variants(tmp_path, "enc")


def test_comparison_repository_serves_each_version_as_its_own_model(tmp_path: Path):
    repo = tmp_path / "repo"
    _model(repo, "enc", {1: None, 2: _quantized("enc", "int8-dynamic")})
    variants = find_variants(repo, "enc")
    served = _comparison_repository(repo, variants, tmp_path / "work")
    assert sorted(p.name for p in served.iterdir()) == ["enc_v1", "enc_v2"]
    config = read_config(served / "enc_v2" / "config.pbtxt")
    assert config.name == "enc_v2"
    assert (served / "enc_v2" / "1" / "model.onnx").resolve() == (repo / "enc" / "2" / "model.onnx").resolve()
    assert not (repo / "enc_v1").exists()  # the canonical repository is untouched


def test_request_batches_walks_the_samples_and_rejects_too_few_rows():
    batches = request_batches({"x": np.arange(10).reshape(10, 1)}, 4)
    assert [b["x"][:, 0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ConfigError, match="cannot make a batch of 16"):
        request_batches({"x": np.zeros((10, 1))}, 16)


def test_gate_summary_reads_each_metric():
    assert gate_summary(None) == "reference"
    accuracy = {"metric": "accuracy", "candidate_accuracy": 0.98, "drop_points": 0.22}
    assert gate_summary(accuracy) == "acc 98.00% (drop 0.22 pt)"
    assert gate_summary({"metric": "cosine", "cosine_mean": 0.995, "cosine_min": 0.981}) == "cos 0.9950 / min 0.9810"
    assert gate_summary({"metric": "max-abs", "max_abs_error": 0.001}) == "max abs 1.00e-03"


def test_format_compare_has_one_row_per_variant_and_the_speedup(tmp_path: Path):
    _model(tmp_path, "enc", {1: None, 2: _quantized("enc", "int8-dynamic")})
    ref, var = find_variants(tmp_path, "enc")
    fig = LoopFigures(requests_per_s=100, items_per_s=100, p50_ms=1.0, p99_ms=2.0, requests=300, errors=0)
    report = CompareReport(
        model="enc",
        batch_sizes=(1,),
        concurrency=1,
        seconds=1,
        rounds=1,
        rows=[
            CompareRow(variant=ref, figures={1: fig}, speedup={1: 1.0}),
            CompareRow(variant=var, figures={1: fig}, speedup={1: 2.5}),
        ],
    )
    text = format_compare(report)
    assert len(text.splitlines()) == 3 and "2.50x" in text and "int8-dynamic" in text
    md = format_compare(report, markdown=True)
    assert md.splitlines()[1].startswith("|---|") and md.count("\n") == 3
    assert json.loads(json.dumps(report.to_dict()))["rows"][1]["speedup"] == {"1": 2.5}


def test_compare_refuses_to_replace_an_earlier_json_report_before_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from tritonforge.cli import compare as compare_cli
    from tritonforge.loadtests import compare as compare_module

    def no_measuring(**kwargs: object) -> None:
        raise AssertionError("measured although the report could not be written")

    monkeypatch.setattr(compare_module, "compare_variants", no_measuring)
    report = tmp_path / "report.json"
    report.write_text('{"earlier": true}', encoding="utf-8")
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, image=np.zeros((4, 1, 8, 8), np.float32))
    app = typer.Typer()
    app.command()(compare_cli.compare)

    result = CliRunner().invoke(app, ["digits", "--inputs", str(inputs), "--json", str(report)])

    assert isinstance(result.exception, ConfigError)
    assert f"{report} already exists (an earlier report); pass --overwrite" in str(result.exception)
    assert report.read_text(encoding="utf-8") == '{"earlier": true}'
