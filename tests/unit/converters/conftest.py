"""Fixtures for the converter tests: tiny models, the digits-shaped input spec, an exported repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from converter_models import tiny_cnn
from torch import nn

from tritonforge.converters.export import ExportedVersion, export_to_repository
from tritonforge.converters.specs import TensorSpec
from tritonforge.examples.digits import build_digits

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "configs"


@pytest.fixture
def image_spec() -> TensorSpec:
    return TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")


@pytest.fixture
def model() -> nn.Module:
    return tiny_cnn()


@pytest.fixture
def golden_digits_config() -> str:
    return (ASSETS / "digits.pbtxt").read_text(encoding="utf-8")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return tmp_path / "model_repository"


@pytest.fixture
def exported(model: nn.Module, image_spec: TensorSpec, repository: Path) -> ExportedVersion:
    """A `digits`-named version 1, exported the way the example model is."""
    return export_to_repository(
        model=model,
        inputs=[image_spec],
        output_names=["logits"],
        repository=repository,
        model_name="digits",
        source="converter_models:tiny_cnn",
    )


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the trained digits CNN as `digits` version 1 (15 epochs, ~98%), built once per session.

    Read-only: tests that write into a repository copy it first.
    """
    root = tmp_path_factory.mktemp("trained-digits")
    build_digits(repository=root / "repo", weights_dir=root, epochs=15)
    return root / "repo"
