"""Fixtures that build the `digits` example and serve it with the real embedded tritonserver."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tritonforge.examples import minilm
from tritonforge.examples.digits import DigitsBuild, build_digits, load_split
from tritonforge.serving.launcher import EmbeddedTriton

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of this folder `integration`, and only them.

    pytest calls this hook with every collected item of the session (unit and gpu tests too), not only this
    folder's, so the mark goes by path: `-m integration` and `-m "not integration"` then split the suite.
    """
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class DigitsSplitFixture:
    x_test: np.ndarray
    y_test: np.ndarray
    torch_logits: np.ndarray


@pytest.fixture(scope="session")
def digits_build(tmp_path_factory: pytest.TempPathFactory) -> DigitsBuild:
    root = tmp_path_factory.mktemp("digits")
    return build_digits(repository=root / "model_repository", weights_dir=root / "build")


@pytest.fixture(scope="session")
def digits_repository(digits_build: DigitsBuild) -> Path:
    return digits_build.exported.model_dir.parent


@pytest.fixture(scope="session")
def digits_split(digits_build: DigitsBuild) -> DigitsSplitFixture:
    split = load_split()
    return DigitsSplitFixture(x_test=split.x_test, y_test=split.y_test, torch_logits=digits_build.torch_test_logits)


@pytest.fixture(scope="session")
def triton_server(digits_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    log_path = tmp_path_factory.mktemp("server") / "tritonserver.log"
    server = EmbeddedTriton(repository=digits_repository, log_path=log_path, startup_timeout_s=120)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def minilm_build(tmp_path_factory: pytest.TempPathFactory) -> minilm.MiniLMBuild:
    """all-MiniLM-L6-v2 as the `minilm` ensemble (encoder, tokenizer, ensemble), built once per session (~10 s)."""
    return minilm.build_minilm(tmp_path_factory.mktemp("minilm") / "model_repository")


@pytest.fixture(scope="session")
def reference_model() -> Any:
    """sentence-transformers' own all-MiniLM-L6-v2: the yardstick for every embedding test."""
    return minilm.load_sentence_transformer()
