"""quantize_to_repository on the real digits model and tiny ones: a variant is written only if it passes the gate,
holds ops of its method and is smaller or faster than FP32 (figures injected), or is forced; failing ones never."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from variant_figures import measure_with

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.export import export_to_repository
from tritonforge.converters.quality_gate import GateMetric, GateSpec, run_model
from tritonforge.converters.quantize import QuantMethod, QuantSettings
from tritonforge.converters.repository import MANIFEST_NAME, sha256_file
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import read_config
from tritonforge.converters.variants import (
    measure_speed,
    outcomes_report,
    quantize_to_repository,
    speed_feeds,
    variant_name,
)
from tritonforge.errors import ConfigError
from tritonforge.examples.digits import load_split

DYNAMIC = QuantSettings(method=QuantMethod.INT8_DYNAMIC)
STATIC = QuantSettings(method=QuantMethod.INT8_STATIC)
ACCURACY = GateSpec(metric=GateMetric.ACCURACY)
FAST = {"measure": measure_with(speedup=2.0)}  # what these tests check is not the speed: inject figures that earn


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


class _LSTMClassifier(torch.nn.Module):
    """torch.nn.LSTM + Linear: three classes from the last step of a 5-step sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(4, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class _ClassIdFirst(torch.nn.Module):
    """A classifier whose first output is the int64 class id [N, 1]; its second, the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.head(x)
        return logits.argmax(dim=1, keepdim=True), logits[:, :1], logits


def _export(model: torch.nn.Module, root: Path, shape: tuple[int, ...], outputs: list[str]) -> Path:
    torch.manual_seed(0)
    export_to_repository(
        model=model.eval(), inputs=[TensorSpec(name="x", shape=shape, dtype="float32")], output_names=outputs,
        repository=root, model_name="m", source="test_variants",
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def lstm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EvalSet]:
    torch.manual_seed(0)
    root = _export(_LSTMClassifier(), tmp_path_factory.mktemp("lstm") / "repo", (5, 4), ["logits"])
    rng = np.random.default_rng(0)
    eval_set = EvalSet.from_arrays(
        {"x": rng.normal(size=(64, 5, 4)).astype(np.float32)}, labels=rng.integers(0, 3, 64), batch_size=32
    )
    return root, eval_set


@pytest.mark.parametrize("how", ["accuracy-aware", "excluded"])
def test_an_int8_variant_that_keeps_every_node_in_float_is_refused_even_forced(
    lstm: tuple[Path, EvalSet], tmp_path: Path, how: str
) -> None:
    # The LSTM case: accuracy-aware kept every node in float, and "pass" was written as m_int8_dynamic, no INT8 op
    # left and a larger file than FP32. Figures that would earn it (2x faster) must not save it either.
    repo = tmp_path / "repo"
    shutil.copytree(lstm[0], repo)
    before = _tree_digest(repo)
    settings = DYNAMIC if how == "accuracy-aware" else DYNAMIC.with_exclusions(["/lstm/LSTM", "/head/Gemm"])
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="m", settings=[settings], eval_set=lstm[1],
        gate=GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=1e-5), accuracy_aware=how == "accuracy-aware",
        force=True, **FAST,
    )  # fmt: skip
    assert outcome.passed and outcome.written is None and outcome.evidence == {}
    assert outcome.refusal is not None and outcome.refusal.startswith("no op was quantized")
    assert "nothing written" in outcome.refusal and "\n" not in outcome.refusal
    if how == "accuracy-aware":
        assert "kept all 2 quantized node(s) in float" in outcome.refusal
    assert outcome.verdict.startswith("REFUSED: no op was quantized")
    assert _tree_digest(repo) == before


def test_a_quantized_lstm_variant_holds_its_int8_ops(lstm: tuple[Path, EvalSet], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(lstm[0], repo)
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="m", settings=[DYNAMIC], eval_set=lstm[1],
        gate=GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=1.0), **FAST,
    )  # fmt: skip
    assert outcome.evidence == {"DynamicQuantizeLSTM": 1, "MatMulInteger": 1}
    assert outcome.written is not None
    assert json.loads((outcome.written / MANIFEST_NAME).read_text())["evidence"] == outcome.evidence


def test_a_variant_slower_and_larger_than_fp32_is_not_written(repo: Path, built: tuple[Path, EvalSet, EvalSet]) -> None:
    _, eval_set, _ = built
    before = _tree_digest(repo)
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set, gate=ACCURACY,
        measure=measure_with(speedup=[0.81, 0.75], size_ratio=1.1),
    )  # fmt: skip
    assert outcome.passed and outcome.written is None and outcome.evidence
    assert outcome.merit is not None and not outcome.merit.earned
    assert outcome.refusal == (
        "neither smaller nor faster than FP32 in this run (size 1.10x FP32, speed 0.81x at batch 1, 0.75x at batch "
        "16); not written: keep serving the FP32 model, or force it (--force) to write it anyway"
    )
    assert _tree_digest(repo) == before


def test_a_forced_variant_that_is_not_smaller_or_faster_is_written_with_a_warning(
    repo: Path, built: tuple[Path, EvalSet, EvalSet]
) -> None:
    _, eval_set, _ = built
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set, gate=ACCURACY, force=True,
        measure=measure_with(speedup=[0.81, 0.75], size_ratio=1.1),
    )  # fmt: skip
    assert outcome.written == repo / "digits_int8_dynamic" / "1" and outcome.refusal is None
    assert outcome.warnings == (
        "neither smaller nor faster than FP32 (size 1.10x FP32, speed 0.81x at batch 1, 0.75x at batch 16); "
        "written because it was forced",
    )
    assert outcome.verdict.startswith("pass (WARNING: neither smaller nor faster")
    manifest = json.loads((outcome.written / MANIFEST_NAME).read_text())
    assert manifest["warnings"] == list(outcome.warnings)
    assert manifest["merit"]["earned"] is False and manifest["merit"]["size_ratio"] == 1.1


@pytest.mark.parametrize(
    ("speedup", "size_ratio", "written"),
    [
        ([0.81, 0.75], 0.27, True),  # smaller, slower: the digits INT8 CNN
        ([2.4, 1.8], 1.0, True),  # faster, same size
        ([1.2, 0.9], 1.0, False),  # faster at one batch size only is not faster
    ],
)
def test_a_variant_is_written_when_smaller_or_faster_than_fp32(
    repo: Path, built: tuple[Path, EvalSet, EvalSet], speedup: list[float], size_ratio: float, written: bool
) -> None:
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=built[1], gate=ACCURACY,
        measure=measure_with(speedup=speedup, size_ratio=size_ratio),
    )  # fmt: skip
    assert (outcome.written is not None) is written


def test_the_outcome_and_the_report_carry_the_fp32_baseline(repo: Path, built: tuple[Path, EvalSet, EvalSet]) -> None:
    _, eval_set, _ = built
    (outcome,) = quantize_to_repository(
        repository=repo, model_name="digits", settings=[DYNAMIC], eval_set=eval_set, gate=ACCURACY, **FAST
    )
    fp32_logits = run_model(repo / "digits" / "1" / "model.onnx", eval_set)
    fp32_accuracy = float((fp32_logits.argmax(axis=1) == eval_set.labels).mean())
    assert outcome.reference_accuracy == fp32_accuracy
    assert outcome.reference_size == (repo / "digits" / "1" / "model.onnx").stat().st_size
    report = outcomes_report("digits", [outcome])
    assert report["fp32"]["accuracy"] == fp32_accuracy and report["fp32"]["file_size"] == outcome.reference_size
    assert [p["items_per_s"] for p in report["fp32"]["speed"]] == [1000.0, 1000.0]
    assert report["variants"][0]["merit"]["speedup"] == {"1": 2.0, "16": 2.0}
    assert report["written"] == ["digits_int8_dynamic"]
    json.dumps(report)  # the report is JSON as it stands


@pytest.fixture(scope="module")
def class_id_first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EvalSet]:
    root = _export(_ClassIdFirst(), tmp_path_factory.mktemp("class-id") / "repo", (4,), ["class_id", "score", "logits"])
    rng = np.random.default_rng(0)
    eval_set = EvalSet.from_arrays(
        {"x": rng.normal(size=(64, 4)).astype(np.float32)}, labels=rng.integers(0, 3, 64), batch_size=32
    )
    return root, eval_set


@pytest.mark.parametrize(
    ("output", "what"), [(None, "'class_id' is int64 [Nx1]"), ("class_id", "'class_id' is int64 [Nx1]"),
                         ("score", "'score' is float [Nx1]")]
)  # fmt: skip
def test_the_accuracy_gate_refuses_an_output_that_is_not_class_scores_and_names_the_one_that_is(
    class_id_first: tuple[Path, EvalSet], output: str | None, what: str
) -> None:
    # Gated on an int64 class-id output [N, 1], the gate once reported "acc 0.2734 (drop +0.00 pts) -> pass".
    root, eval_set = class_id_first
    before = _tree_digest(root)
    with pytest.raises(ConfigError) as caught:
        quantize_to_repository(
            repository=root, model_name="m", settings=[DYNAMIC], eval_set=eval_set,
            gate=GateSpec(metric=GateMetric.ACCURACY, output=output), **FAST,
        )  # fmt: skip
    assert str(caught.value) == (
        f"the accuracy gate takes class scores or logits, float [N, C>=2]; output {what}: "
        "gate on 'logits' (--output logits)"
    )
    assert _tree_digest(root) == before


def test_the_accuracy_gate_takes_the_logits_output_of_the_same_model(class_id_first: tuple[Path, EvalSet]) -> None:
    root, eval_set = class_id_first
    (outcome,) = quantize_to_repository(
        repository=root, model_name="m", settings=[DYNAMIC], eval_set=eval_set,
        gate=GateSpec(metric=GateMetric.ACCURACY, output="logits", max_accuracy_drop_points=100), force=True, **FAST,
    )  # fmt: skip
    assert outcome.gate is not None and outcome.gate.reference_accuracy == outcome.reference_accuracy
