"""MiniLM's gated INT8 variant: written with its manifest, served behind its own ensemble;
a failing gate writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tritonforge.client import TritonClient
from tritonforge.converters.quality_gate import GateMetric, GateSpec
from tritonforge.converters.quantize import QuantMethod, QuantSettings
from tritonforge.converters.repo_check import check_repository
from tritonforge.converters.variants import quantize_to_repository
from tritonforge.examples import minilm
from tritonforge.examples.digits import DigitsBuild
from tritonforge.examples.variants import (
    DIGITS_INT8,
    MINILM_ENCODER_INT8,
    MINILM_INT8,
    TextVariant,
    quantize_digits,
    quantize_minilm,
)
from tritonforge.serving.launcher import EmbeddedTriton

COMMITTED = Path(__file__).parents[2] / "model_repository"


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def repository(minilm_build: minilm.MiniLMBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("minilm-int8") / "model_repository"
    shutil.copytree(minilm_build.repository, copy)
    return copy


@pytest.fixture(scope="module")
def text_variant(repository: Path) -> TextVariant:
    return quantize_minilm(repository)


@pytest.fixture(scope="module")
def server(text_variant: TextVariant, repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("minilm-int8-server") / "tritonserver.log"
    with EmbeddedTriton(repository=repository, log_path=log_path, startup_timeout_s=120) as triton:
        yield triton.grpc_url


def test_int8_variant_passes_its_gate_and_records_it(text_variant: TextVariant, repository: Path) -> None:
    outcome = text_variant.outcome
    assert outcome.passed and outcome.written == repository / MINILM_ENCODER_INT8 / "1"
    manifest = json.loads((outcome.written / "manifest.json").read_text())
    assert manifest["quantized_from"]["model"] == minilm.ENCODER_NAME
    assert (
        manifest["quantized_from"]["sha256"]
        == json.loads((repository / minilm.ENCODER_NAME / "1" / "manifest.json").read_text())["sha256"]
    )
    result = manifest["gate"]["result"]
    assert result["cosine_mean"] >= 0.99 and result["cosine_min"] >= 0.98
    assert manifest["evaluation"]["items"] == 500 and len(manifest["evaluation"]["sha256"]) == 64
    speedups = manifest["speed"]["speedup"]  # recorded for the table; how fast is a benchmark's question, not a test's
    assert "1" in speedups and all(math.isfinite(value) and value > 0 for value in speedups.values())
    assert (outcome.written / "model.onnx").stat().st_size < 0.4 * (
        repository / minilm.ENCODER_NAME / "1" / "model.onnx"
    ).stat().st_size
    assert list(check_repository(repository)) == []


def test_served_int8_ensemble_stays_close_to_sentence_transformers(server: str, reference_model: Any) -> None:
    sentences = minilm.evaluation_sentences(200, seed=1)
    with TritonClient(server, timeout_s=60.0) as client:
        client.wait_until_ready(MINILM_INT8, timeout_s=60.0)
        served = client.embed(sentences, model=MINILM_INT8)
    cosines = _cosines(served, reference_model.encode(sentences, convert_to_numpy=True))
    assert served.shape == (200, minilm.EMBEDDING_DIM)
    assert cosines.mean() >= 0.99 and cosines.min() >= 0.97


def test_a_gate_the_variant_cannot_meet_writes_nothing(repository: Path, text_variant: TextVariant) -> None:
    before = _tree_digest(repository)
    eval_set = minilm.sentence_eval_set(minilm.evaluation_sentences(64, seed=2), batch_size=16)
    outcomes = quantize_to_repository(
        repository=repository, model_name=minilm.ENCODER_NAME,
        settings=[QuantSettings(method=QuantMethod.INT8_DYNAMIC)], eval_set=eval_set,
        gate=GateSpec(metric=GateMetric.COSINE, min_cosine_mean=0.9999, min_cosine_min=0.999),
        variant_name="minilm_encoder_too_strict",
    )  # fmt: skip
    assert not outcomes[0].passed and outcomes[0].written is None
    assert outcomes[0].shortfall is not None and "0.999" in outcomes[0].shortfall
    assert _tree_digest(repository) == before


@pytest.mark.parametrize(
    "name", [minilm.MODEL_NAME, minilm.ENCODER_NAME, minilm.TOKENIZER_NAME, MINILM_INT8, MINILM_ENCODER_INT8]
)
def test_committed_text_configs_equal_the_generated_ones(
    name: str, repository: Path, text_variant: TextVariant
) -> None:
    generated = (repository / name / "config.pbtxt").read_text()
    assert (COMMITTED / name / "config.pbtxt").read_text() == generated, "run `make demo` and commit the config"


def test_committed_digits_int8_config_equals_the_generated_one(digits_build: DigitsBuild, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(digits_build.exported.model_dir.parent, copy)
    quantize_digits(copy)
    generated = (copy / DIGITS_INT8 / "config.pbtxt").read_text()
    assert (COMMITTED / DIGITS_INT8 / "config.pbtxt").read_text() == generated, "run `make demo` and commit the config"
