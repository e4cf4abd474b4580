"""The digits example: accuracy floor, and the committed config.pbtxt is exactly what the converters generate."""

from __future__ import annotations

from pathlib import Path

from tritonforge.converters.repo_check import check_repository
from tritonforge.examples.digits import MIN_TEST_ACCURACY, DigitsBuild

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
