"""Serve a production-format repository on a server that lacks some of its backends.

    served = derive_repository(repository=Path("model_repository"), backends={"python"}, work_dir=tmp)

The canonical repository is never edited. When every model's backend is available, it is served as it is; otherwise a
derived copy is built in `work_dir`: models whose backend exists are linked unchanged, and ONNX models are rewritten
to run through the generic ONNX Runtime python-backend adapter, keeping their name, inputs, outputs, max_batch_size,
dynamic_batching and instance_group. Model files are symlinked, not copied.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from tritonclient.grpc import model_config_pb2

from tritonforge.converters.triton_config import read_config, write_config
from tritonforge.errors import ServerError

_LOGGER = logging.getLogger(__name__)

ADAPTER_FILE = Path(__file__).parent / "adapters" / "onnxruntime_model.py"

_PLATFORM_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "tensorrt_plan": "tensorrt",
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
}


def required_backend(config: model_config_pb2.ModelConfig) -> str | None:
    """Return the backend a model needs, or None for server built-ins such as ensembles."""
    if config.backend:
        return str(config.backend)
    if config.platform == "ensemble":
        return None
    return _PLATFORM_BACKENDS.get(config.platform, config.platform or None)


def model_dirs(repository: Path) -> list[Path]:
    """Return the model folders of a repository (those holding a config.pbtxt), sorted by name."""
    if not repository.is_dir():
        raise ServerError(f"model repository {repository} does not exist; build one with `tritonforge export`")
    return sorted(p for p in repository.iterdir() if (p / "config.pbtxt").is_file())


def derive_repository(*, repository: Path, backends: Iterable[str], work_dir: Path) -> Path:
    """Return the repository to serve: `repository` itself, or a derived copy under `work_dir`.

    Args:
        repository: the canonical, production-format model repository.
        backends: names of the backends the running server has.
        work_dir: a folder owned by the caller; the derived copy goes in `work_dir/repository`.

    Returns:
        The path to pass to tritonserver's --model-repository.

    Raises:
        ServerError: a model needs a backend the server lacks and no adapter exists for it.
    """
    available = set(backends)
    configs = {d: read_config(d / "config.pbtxt") for d in model_dirs(repository)}
    needed = {d: required_backend(c) for d, c in configs.items()}
    missing = {d: backend for d, backend in needed.items() if backend is not None and backend not in available}
    if not missing:
        return repository
    unsupported = {d.name: b for d, b in missing.items() if b != "onnxruntime"}
    if unsupported:
        raise ServerError(
            "the running tritonserver lacks backends for "
            + ", ".join(f"'{name}' ({backend})" for name, backend in sorted(unsupported.items()))
            + "; serve these models with --server-binary pointing at a full Triton install (e.g. the NGC image)"
        )
    derived = work_dir / "repository"
    shutil.rmtree(derived, ignore_errors=True)
    derived.mkdir(parents=True)
    for model_dir, config in configs.items():
        if model_dir in missing:
            _write_adapted_model(model_dir, config, derived / model_dir.name)
        else:
            (derived / model_dir.name).symlink_to(model_dir.resolve(), target_is_directory=True)
    _LOGGER.info("serving %d ONNX model(s) through the ONNX Runtime adapter from %s", len(missing), derived)
    return derived


def _write_adapted_model(model_dir: Path, config: model_config_pb2.ModelConfig, target: Path) -> None:
    adapted = model_config_pb2.ModelConfig()
    adapted.CopyFrom(config)
    onnx_file = config.default_model_filename or "model.onnx"
    adapted.ClearField("platform")
    adapted.ClearField("default_model_filename")
    adapted.ClearField("optimization")  # execution accelerators (TensorRT) mean nothing to the adapter
    adapted.backend = "python"
    adapted.parameters["onnx_file"].string_value = onnx_file
    if "intra_op_num_threads" not in adapted.parameters:
        adapted.parameters["intra_op_num_threads"].string_value = "0"
    target.mkdir()
    for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        model_file = version_dir / onnx_file
        if not model_file.is_file():
            continue  # Triton reports the version as unavailable; `tritonforge repo check` names the missing file
        (target / version_dir.name).mkdir()
        (target / version_dir.name / onnx_file).symlink_to(model_file.resolve())
        (target / version_dir.name / "model.py").symlink_to(ADAPTER_FILE.resolve())
    write_config(adapted, target / "config.pbtxt")
