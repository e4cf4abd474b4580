"""quantize_to_repository on the real digits model: passing variants are written with a manifest, failing ones never."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.quality_gate import GateMetric, GateSpec, run_model
from tritonforge.converters.quantize import QuantMethod, QuantSettings
from tritonforge.converters.repository import MANIFEST_NAME, sha256_file
from tritonforge.converters.triton_config import read_config
from tritonforge.converters.variants import measure_speed, quantize_to_repository, speed_feeds, variant_name
from tritonforge.errors import ConfigError
from tritonforge.examples.digits import load_split

DYNAMIC = QuantSettings(method=QuantMethod.INT8_DYNAMIC)
STATIC = QuantSettings(method=QuantMethod.INT8_STATIC)
ACCURACY = GateSpec(metric=GateMetric.ACCURACY)
FAST = {"speed_seconds": 0.02}  # timing is not what these tests check; keep them quick


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, trained_digits: Path) -> tuple[Path, EvalSet, EvalSet]:
    """A repository holding the trained digits CNN as version 1, the test set and a calibration set."""
    split = load_split()
    eval_set = EvalSet.from_arrays({"image": split.x_test}, labels=split.y_test, batch_size=64)
    calibration = EvalSet.from_arrays({"image": split.x_train[:192]}, batch_size=64)
    return trained_digits, eval_set, calibration


@pytest.fixture
def repo(built: tuple[Path, EvalSet, EvalSet], tmp_path: Path) -> Path:
    """A fresh copy of the built repository for each test."""
    import shutil

    copy = tmp_path / "model_repository"
    shutil.copytree(built[0], copy)
    return copy


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_a_passing_int8_variant_is_written_as_its_own_model_with_a_full_manifest(
    repo: Path, built: tuple[Path, EvalSet, EvalSet]
) -> None:
    _, eval_set, _ = built
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set, gate=ACCURACY, **FAST
    )
    assert outcome.passed and outcome.shortfall is None
    assert outcome.name == "digits_int8_dynamic" and outcome.written == repo / "digits_int8_dynamic" / "1"
    assert outcome.gate is not None and outcome.gate.drop_points is not None and outcome.gate.drop_points <= 0.5
    config = read_config(repo / "digits_int8_dynamic" / "config.pbtxt")
    source_config = read_config(repo / "digits" / "config.pbtxt")
    assert config.name == "digits_int8_dynamic" and list(config.input) == list(source_config.input)
    manifest = json.loads((outcome.written / MANIFEST_NAME).read_text())
    assert manifest["quantized_from"] == {
        "model": "digits", "version": 1, "model_file": "model.onnx",
        "sha256": sha256_file(repo / "digits" / "1" / "model.onnx"),
    }  # fmt: skip
    assert manifest["quantization"]["method"] == "int8-dynamic" and manifest["calibration"] is None
    assert manifest["evaluation"] == {"sha256": eval_set.sha256(), "items": 450, "batches": 8}
    assert manifest["gate"]["spec"] == {"metric": "accuracy", "output": "logits", "max_accuracy_drop_points": 0.5}
    assert manifest["gate"]["result"]["passed"] is True
    assert [p["batch_size"] for p in manifest["speed"]["fp32"]] == [1, 16]
    assert set(manifest["speed"]["speedup"]) == {"1", "16"}
    assert manifest["sha256"] == sha256_file(outcome.written / "model.onnx")
    # the written file is the gated variant: it reproduces the gate's accuracy
    logits = run_model(outcome.written / "model.onnx", eval_set)
    assert float((logits.argmax(axis=1) == eval_set.labels).mean()) == outcome.gate.candidate_accuracy


def test_a_failing_gate_writes_nothing_and_says_by_how_much(repo: Path, built: tuple[Path, EvalSet, EvalSet]) -> None:
    _, eval_set, _ = built
    before = _tree_digest(repo)
    strict = GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=1e-6)  # INT8 cannot be this close
    outcomes = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC, STATIC], eval_set=eval_set, gate=strict,
        calibration=built[2], **FAST,
    )  # fmt: skip
    assert [o.passed for o in outcomes] == [False, False]
    for outcome in outcomes:
        assert outcome.written is None and outcome.shortfall is not None
        assert outcome.shortfall.startswith("max abs error") and "> 1e-06 by" in outcome.shortfall
        assert outcome.speed is not None  # still timed, so the table can show what was given up
    assert _tree_digest(repo) == before


def test_accuracy_aware_mode_writes_the_variant_with_named_exclusions_and_their_costs(
    repo: Path, built: tuple[Path, EvalSet, EvalSet]
) -> None:
    _, eval_set, _ = built
    (plain,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set,
        gate=GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=1e9), **FAST,
    )  # fmt: skip
    assert plain.gate is not None
    tight = GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=plain.gate.max_abs_error / 2)
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set, gate=tight,
        accuracy_aware=True, variant_name="digits_int8_aware", sensitivity_items=128, **FAST,
    )  # fmt: skip
    assert outcome.passed and outcome.search is not None and outcome.written is not None
    assert outcome.settings.exclude_nodes and set(outcome.settings.exclude_nodes) <= {
        "/0/Conv", "/2/Conv", "/6/Gemm", "/8/Gemm",
    }  # fmt: skip
    manifest = json.loads((outcome.written / MANIFEST_NAME).read_text())
    excluded = manifest["quantization"]["excluded"]
    assert [e["name"] for e in excluded] == list(outcome.settings.exclude_nodes)
    assert all(e["tolerance_used"] > 0 for e in excluded)
    assert manifest["quantization"]["exclude_nodes"] == list(outcome.settings.exclude_nodes)
    attempts = manifest["quantization"]["accuracy_aware"]["attempts"]
    assert any(a["passed"] for a in attempts) and attempts[0]["excluded_nodes"] == 1
    assert manifest["gate"]["result"]["max_abs_error"] <= tight.max_abs_error


def test_an_accuracy_aware_search_that_finds_nothing_writes_nothing(
    repo: Path, built: tuple[Path, EvalSet, EvalSet]
) -> None:
    _, eval_set, _ = built
    before = _tree_digest(repo)
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set,
        gate=GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=1e-12), accuracy_aware=True, max_tries=2,
        sensitivity_items=64, **FAST,
    )  # fmt: skip
    assert not outcome.passed and outcome.written is None and outcome.search is not None
    assert outcome.shortfall is not None and outcome.shortfall.endswith(
        "(accuracy-aware: no passing variant in 2 tries)"
    )
    assert _tree_digest(repo) == before


def test_as_version_adds_the_next_version_and_later_runs_still_quantize_the_fp32_one(
    repo: Path, built: tuple[Path, EvalSet, EvalSet]
) -> None:
    _, eval_set, calibration = built
    (first,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[STATIC], eval_set=eval_set, gate=ACCURACY,
        calibration=calibration, as_version=True, **FAST,
    )  # fmt: skip
    assert first.passed and first.written == repo / "digits" / "2"
    manifest = json.loads((first.written / MANIFEST_NAME).read_text())
    assert manifest["calibration"]["sha256"] == calibration.sha256()
    assert manifest["quantization"]["calibration"] == "minmax"
    (second,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set, gate=ACCURACY,
        as_version=True, **FAST,
    )  # fmt: skip
    assert second.written == repo / "digits" / "3"
    assert json.loads((second.written / MANIFEST_NAME).read_text())["quantized_from"]["version"] == 1
    with pytest.raises(ConfigError, match="itself a quantized variant"):
        quantize_to_repository(
            repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set, gate=ACCURACY,
            source_version=2, **FAST,
        )  # fmt: skip


def test_overwrite_replaces_the_variants_latest_version(repo: Path, built: tuple[Path, EvalSet, EvalSet]) -> None:
    _, eval_set, _ = built
    for overwrite in (False, False, True):
        quantize_to_repository(
            repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set, gate=ACCURACY,
            overwrite=overwrite, **FAST,
        )  # fmt: skip
    assert sorted(p.name for p in (repo / "digits_int8_dynamic").iterdir() if p.is_dir()) == ["1", "2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"settings": [STATIC]}, "calibration set"),
        ({"settings": [DYNAMIC, STATIC], "variant_name": "x", "calibration": "calib"}, "fits one setting"),
        ({"variant_name": "digits"}, "--as-version"),
        ({"as_version": True, "variant_name": "x"}, "not both"),
        ({"as_version": True, "overwrite": True}, "refused"),
        ({"settings": [DYNAMIC, DYNAMIC]}, "same variant"),
        ({"settings": []}, "at least one method"),
        ({"model_name": "missing"}, "does not exist"),
        ({"source_version": 7}, "no version 7"),
        ({"gate": GateSpec(metric=GateMetric.ACCURACY, output="probabilities")}, "no output 'probabilities'"),
        ({"eval_set": EvalSet.from_arrays({"pixels": np.zeros((2, 1, 8, 8), np.float32)})}, "name the .npz"),
        ({"eval_set": EvalSet.from_arrays({"image": np.zeros((2, 1, 8, 8), np.float32)})}, "needs labels"),
    ],
)
def test_mistakes_are_config_errors_before_any_work_and_leave_the_repository_alone(
    repo: Path, built: tuple[Path, EvalSet, EvalSet], kwargs: dict[str, object], message: str
) -> None:
    _, eval_set, calibration = built
    arguments: dict[str, object] = {
        "repository": repo, "model_name": "digits", "settings": [DYNAMIC], "eval_set": eval_set, "gate": ACCURACY,
    }  # fmt: skip
    arguments.update(kwargs)
    if arguments.get("calibration") == "calib":
        arguments["calibration"] = calibration
    before = _tree_digest(repo)
    with pytest.raises(ConfigError, match=message):
        quantize_to_repository(**arguments)  # type: ignore[arg-type]
    assert _tree_digest(repo) == before


def test_variant_names_are_unique_per_settings() -> None:
    assert variant_name("digits", DYNAMIC) == "digits_int8_dynamic"
    pc = QuantSettings(method=QuantMethod.INT8_DYNAMIC, per_channel=True, reduce_range=True)
    assert variant_name("minilm", pc) == "minilm_int8_dynamic_pc_rr"


def test_measure_speed_times_every_model_at_each_batch_size(built: tuple[Path, EvalSet, EvalSet]) -> None:
    repository, eval_set, _ = built
    feeds = speed_feeds(eval_set, large_batch=8)
    assert [len(f["image"]) for f in feeds] == [1, 8]
    source = repository / "digits" / "1" / "model.onnx"
    speeds = measure_speed({"a": source, "b": source}, feeds, rounds=2, seconds=0.02)
    for points in speeds.values():
        assert [p.batch_size for p in points] == [1, 8]
        assert all(p.runs >= 2 and p.p50_ms > 0 for p in points)
        assert points[1].items_per_s == pytest.approx(8 / (points[1].p50_ms / 1e3))
