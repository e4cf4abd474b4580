"""The digits example: accuracy floor, the committed config.pbtxt is exactly what the converters generate, and its
INT8 variant is written and served on what the gate measured, not on what it is called."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tritonforge.converters.repo_check import check_repository
from tritonforge.converters.repository import MANIFEST_NAME
from tritonforge.demo import served_digits_model
from tritonforge.examples.digits import MIN_TEST_ACCURACY, MODEL_NAME, DigitsBuild
from tritonforge.examples.variants import DIGITS_INT8, quantize_digits

COMMITTED_CONFIG = Path(__file__).parents[2] / "model_repository" / "digits" / "config.pbtxt"


def test_digits_build_reaches_accuracy_floor_when_trained_with_default_seed(digits_build: DigitsBuild) -> None:
    assert digits_build.test_accuracy >= MIN_TEST_ACCURACY
    assert digits_build.exported.parity.passed
    assert digits_build.weights_path.is_file()


def test_committed_digits_config_equals_regenerated_config(digits_build: DigitsBuild) -> None:
    regenerated = (digits_build.exported.model_dir / "config.pbtxt").read_text()
    assert COMMITTED_CONFIG.read_text() == regenerated, "run `tritonforge example digits` and commit the config"


def test_digits_repository_has_no_findings_when_freshly_built(digits_repository: Path) -> None:
    assert list(check_repository(digits_repository)) == []


def test_digits_int8_is_written_for_what_it_holds_and_serves_only_when_measured_faster(
    digits_build: DigitsBuild, tmp_path: Path
) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(digits_build.exported.model_dir.parent, repository)
    outcome = quantize_digits(repository)
    assert outcome.passed and outcome.merit is not None
    assert outcome.evidence.get("Conv (QDQ)") == 2 and outcome.evidence.get("Gemm (QDQ)") == 2
    assert outcome.merit.smaller  # a quarter of FP32's file: written whatever its speed
    assert outcome.written == repository / DIGITS_INT8 / "1"
    manifest = json.loads((outcome.written / MANIFEST_NAME).read_text())
    assert manifest["merit"]["earned"] is True and manifest["fp32"]["file_size"] == outcome.reference_size
    served, why = served_digits_model(outcome)
    # the speed is the gate's measurement of this run; the test checks that serving follows it, never the speed
    assert served == (DIGITS_INT8 if outcome.merit.faster else MODEL_NAME)
    assert outcome.merit.summary() in why
