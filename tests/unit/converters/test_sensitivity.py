"""The accuracy-aware search on the real digits classifier, with a gate tightened until full INT8 fails."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.quality_gate import GateMetric, GateSpec, evaluate_gate, run_model
from tritonforge.converters.quantize import QuantMethod, QuantSettings, preprocess_model, quantize_model
from tritonforge.converters.sensitivity import Granularity, layer_of, search_exclusions, subset
from tritonforge.errors import ConfigError
from tritonforge.examples.digits import load_split

SETTINGS = QuantSettings(method=QuantMethod.INT8_DYNAMIC)


@pytest.fixture(scope="module")
def digits(
    tmp_path_factory: pytest.TempPathFactory, trained_digits: Path
) -> tuple[Path, Path, EvalSet, np.ndarray, float]:
    """The digits CNN, its pre-processed copy, the test set, FP32 logits on it, and full INT8's max abs error."""
    root = tmp_path_factory.mktemp("digits")
    source = trained_digits / "digits" / "1" / "model.onnx"
    split = load_split()
    eval_set = EvalSet.from_arrays({"image": split.x_test}, labels=split.y_test, batch_size=64)
    reference = run_model(source, eval_set)
    preprocessed = preprocess_model(source, root / "preprocessed.onnx")
    full = quantize_model(preprocessed, root / "full.onnx", SETTINGS, preprocessed=True)
    full_error = evaluate_gate(reference, run_model(full, eval_set), GateSpec(metric=GateMetric.MAX_ABS)).max_abs_error
    return source, preprocessed, eval_set, reference, full_error


@pytest.mark.parametrize(
    ("node", "layer"),
    [
        ("/encoder/layer.0/attention/self/query/MatMul", "/encoder/layer.0"),
        ("/m/encoder/layer.11/output/dense/MatMul", "/m/encoder/layer.11"),
        ("/0/Conv", "/0"),
        ("/embeddings/word_embeddings/Gather", "/embeddings/word_embeddings"),
        ("Gather_token_1", "Gather_token_1"),
    ],
)
def test_layer_of_groups_nodes_by_their_indexed_module(node: str, layer: str) -> None:
    assert layer_of(node) == layer


def test_subset_takes_whole_batches_and_their_labels() -> None:
    data = EvalSet.from_arrays({"x": np.arange(10.0)[:, None]}, labels=np.arange(10), batch_size=4)
    part = subset(data, 5)
    assert part.num_items == 8 and part.labels is not None and list(part.labels) == list(range(8))
    assert subset(data, None) is data
    with pytest.raises(ConfigError):
        subset(data, 0)


def test_search_excludes_the_costliest_nodes_until_a_tightened_gate_passes(
    digits: tuple[Path, Path, EvalSet, np.ndarray, float], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, preprocessed, eval_set, reference, full_error = digits
    spec = GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=full_error / 2)  # full INT8 fails this by design
    with caplog.at_level(logging.INFO, logger="tritonforge.converters.sensitivity"):
        result = search_exclusions(
            model=preprocessed, settings=SETTINGS, eval_set=eval_set, reference=reference, spec=spec,
            workdir=tmp_path, sensitivity_items=128,
        )  # fmt: skip
    assert result.passed and result.gate.passed
    assert result.gate.max_abs_error <= full_error / 2
    assert [c.name for c in result.candidates] and {c.name for c in result.candidates} == {
        "/0/Conv", "/2/Conv", "/6/Gemm", "/8/Gemm",
    }  # fmt: skip
    excluded = [c.name for c in result.excluded]
    assert excluded and result.settings.exclude_nodes == tuple(excluded)
    assert excluded == [c.name for c in result.candidates[: len(excluded)]]  # the costliest first
    costs = [c.tolerance_used for c in result.candidates]
    assert costs == sorted(costs, reverse=True)
    assert result.sensitivity_items == 128
    # the file the search returns is the passing variant, and it really leaves the excluded nodes in float
    check = evaluate_gate(reference, run_model(result.model_path, eval_set), spec)
    assert check.passed and check.max_abs_error == result.gate.max_abs_error
    assert result.attempts[-1].gate.passed or any(a.gate.passed for a in result.attempts)
    assert any("sensitivity 1/4" in r.getMessage() for r in caplog.records)
    assert result.to_dict()["excluded"][0]["name"] == excluded[0]


def test_search_gives_up_after_max_tries_and_says_it_did_not_pass(
    digits: tuple[Path, Path, EvalSet, np.ndarray, float], tmp_path: Path
) -> None:
    _, preprocessed, eval_set, reference, _ = digits
    spec = GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=1e-12)  # only an unquantized model could pass
    result = search_exclusions(
        model=preprocessed, settings=SETTINGS, eval_set=eval_set, reference=reference, spec=spec, workdir=tmp_path,
        max_tries=1, sensitivity_items=64,
    )  # fmt: skip
    assert not result.passed and len(result.attempts) == 1
    assert result.gate.shortfall is not None and "max abs error" in result.gate.shortfall


def test_layer_granularity_measures_whole_layers(
    digits: tuple[Path, Path, EvalSet, np.ndarray, float], tmp_path: Path
) -> None:
    _, preprocessed, eval_set, reference, full_error = digits
    spec = GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=full_error / 2)
    result = search_exclusions(
        model=preprocessed, settings=SETTINGS, eval_set=eval_set, reference=reference, spec=spec, workdir=tmp_path,
        granularity=Granularity.LAYER, sensitivity_items=64,
    )  # fmt: skip
    assert {c.name for c in result.candidates} == {"/0", "/2", "/6", "/8"}
    assert result.passed and all(len(c.nodes) == 1 for c in result.excluded)
