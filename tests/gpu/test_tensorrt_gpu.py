"""TensorRT on a real GPU: build the digits engine, run it, compare with ONNX Runtime, rebuild from the timing cache.

Run on a GPU node that has TensorRT 10+ (the `tensorrt` package or trtexec) and cuda-python or a CUDA torch:
    pytest -m gpu tests/gpu
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from tritonforge.converters.gpu_info import import_tensorrt, query_gpu
from tritonforge.converters.repository import MANIFEST_NAME
from tritonforge.converters.tensorrt_repository import EngineVersion, build_engine_to_repository
from tritonforge.converters.tensorrt_runtime import run_engine
from tritonforge.converters.triton_config import read_config
from tritonforge.examples.digits import DigitsBuild, build_digits, load_split

pytestmark = pytest.mark.gpu
_LOGGER = logging.getLogger(__name__)  # figures show with -o log_cli=true


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsBuild:
    root = tmp_path_factory.mktemp("digits_gpu")
    return build_digits(repository=root / "model_repository", weights_dir=root / "build")


@pytest.fixture(scope="module")
def built(digits: DigitsBuild, tmp_path_factory: pytest.TempPathFactory) -> tuple[EngineVersion, Path]:
    work = tmp_path_factory.mktemp("engines")
    cache = work / "timing.cache"
    engine = build_engine_to_repository(
        repository=digits.exported.model_dir.parent, model="digits", output_repository=work / "gpu_repository",
        timing_cache=cache,
    )  # fmt: skip
    return engine, cache


def _onnx_logits(onnx_path: Path, images: NDArray[np.float32]) -> NDArray[np.float32]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": images})
    return np.asarray(logits)


def test_engine_matches_onnx_runtime_on_held_out_digits(digits: DigitsBuild, built: tuple[EngineVersion, Path]) -> None:
    engine, _ = built
    images = load_split().x_test
    for batch in (images[:1], images[:8], images[:64]):  # min, opt and max of the profile
        expected = _onnx_logits(digits.exported.onnx_path, batch)
        got = run_engine(engine.engine_path, {"image": batch})["logits"]
        assert got.shape == expected.shape
        max_abs = float(np.abs(got - expected).max())
        _LOGGER.info("batch %d: max abs err vs ONNX Runtime %.2e", len(batch), max_abs)
        assert max_abs < 1e-3  # TF32 off: an FP32 engine stays FP32
        assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_manifest_records_this_gpu_and_tensorrt_version(built: tuple[EngineVersion, Path]) -> None:
    engine, cache = built
    trt = import_tensorrt()
    gpu = query_gpu(0)
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    manifest = json.loads((engine.engine_path.parent / MANIFEST_NAME).read_text())
    entry = manifest["tensorrt"]["engines"][gpu.compute_capability]
    assert entry["compute_capability"] == smi == gpu.compute_capability
    assert entry["gpu"] == gpu.name
    assert entry["tensorrt_version"] == engine.build.tensorrt_version
    if engine.build.builder == "python":
        assert entry["tensorrt_version"] == trt.__version__
    assert entry["timing_cache"] == str(cache) and cache.stat().st_size > 0
    config = read_config(engine.model_dir / "config.pbtxt")
    assert dict(config.cc_model_filenames) == {gpu.compute_capability: engine.engine_path.name}


def test_rebuild_reuses_the_timing_cache(digits: DigitsBuild, built: tuple[EngineVersion, Path]) -> None:
    first, cache = built
    second = build_engine_to_repository(
        repository=digits.exported.model_dir.parent, model="digits", output_repository=first.model_dir.parent,
        timing_cache=cache, overwrite=True,
    )  # fmt: skip
    _LOGGER.info("first build %.2fs, rebuild with cache %.2fs", first.build.build_seconds, second.build.build_seconds)
    assert second.build.timing_cache_reused
    assert second.added_to_existing and second.engine_path.is_file()
