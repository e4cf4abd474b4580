"""Versioned, atomic writes into a Triton model repository.

    version_dir = add_version(repository=Path("model_repository"), config=config,
                              model_file=Path("build/model.onnx"), manifest={"source": "pkg.mod:factory"})
    # model_repository/digits/config.pbtxt, model_repository/digits/3/{model.onnx,manifest.json}
    add_version(repository=repo, config=tokenizer_config, model_file=Path("model.py"), manifest={},
                extra_files={"tokenizer.json": Path("build/tokenizer.json")})   # files the model reads at load time
    add_version(repository=repo, config=ensemble_config, model_file=None, manifest={})  # 1/manifest.json only

A new version is staged in a hidden folder inside the model's folder (Triton ignores names that are not integers),
fsynced, and renamed into place in one step (a version that is replaced is exchanged with the staged one, never moved
aside first); config.pbtxt is replaced atomically after that. On any failure the staged files are removed and a
replaced version is put back, so the repository is left exactly as it was. Extra files (a tokenizer, a vocabulary)
travel with the model file the same way, and the manifest records the sha256 of each. An ensemble has no model file,
but Triton still needs its version folder: it gets one holding only the manifest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import tritonforge
from tritonforge._atomic import atomic_output, atomic_write_text, published_dir, staging_dir
from tritonforge.converters.triton_config import config_to_text, validate_model_name
from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

_LOGGER = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
CONFIG_NAME = "config.pbtxt"
_DEFAULT_MODEL_FILES = {
    "onnxruntime_onnx": "model.onnx",
    "onnxruntime": "model.onnx",
    "tensorrt_plan": "model.plan",
    "tensorrt": "model.plan",
    "pytorch_libtorch": "model.pt",
    "pytorch": "model.pt",
    "python": "model.py",
    "tensorflow_savedmodel": "model.savedmodel",
    "tensorflow_graphdef": "model.graphdef",
}
_TOOLS = ("torch", "onnx", "onnxruntime", "onnxscript", "tritonclient")
_MODEL_FREE_PLATFORMS = {"ensemble"}


def model_filename(config: model_config_pb2.ModelConfig) -> str | None:
    """Return the file Triton loads from each version folder, or None when unknown (e.g. an ensemble)."""
    if config.default_model_filename:
        return str(config.default_model_filename)
    return _DEFAULT_MODEL_FILES.get(config.platform) or _DEFAULT_MODEL_FILES.get(config.backend)


def version_numbers(model_dir: Path) -> list[int]:
    """Return the model's version numbers, ascending (folders named by an integer without a leading zero)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and p.name[0] != "0")


def read_manifest(version_dir: Path) -> dict[str, Any]:
    """Return a version's manifest.json (what tritonforge recorded when it wrote the version).

    Raises:
        ConfigError: the manifest is missing, unreadable, not JSON, or not a JSON object.
    """
    path = version_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is missing or not JSON; write the version again with tritonforge") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a {type(data).__name__}, not a manifest object; write the version again")
    return data


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tool_versions() -> dict[str, str | None]:
    """Return the versions of the tools that shape an export (None for one not installed)."""
    versions: dict[str, str | None] = {"tritonforge": tritonforge.__version__}
    for tool in _TOOLS:
        try:
            versions[tool] = importlib.metadata.version(tool)
        except importlib.metadata.PackageNotFoundError:
            versions[tool] = None
    return versions


def resolve_version(model_dir: Path, version: int | None, *, overwrite: bool) -> int:
    """Return the version number to write: `version`, or one above the highest existing one.

    Args:
        model_dir: `<repository>/<model>` (need not exist yet).
        version: the version asked for, or None for the next one.
        overwrite: whether an existing `version` may be replaced.

    Returns:
        The version number.

    Raises:
        ConfigError: `version` < 1, or it exists and overwrite is False.
    """
    name = model_dir.name
    if version is None:
        existing = version_numbers(model_dir)
        return existing[-1] + 1 if existing else 1
    if version < 1:
        raise ConfigError(f"version {version} of model '{name}' must be >= 1 (Triton ignores version 0)")
    if (model_dir / str(version)).exists() and not overwrite:
        raise ConfigError(
            f"version {version} of model '{name}' already exists at {model_dir / str(version)}; "
            "pass overwrite=True (--overwrite) to replace it, or omit the version to add the next one"
        )
    return version


def _checked_model_file(config: model_config_pb2.ModelConfig, model_file: Path | None) -> str | None:
    """Return the file name the model file takes in the version folder (None for an ensemble without one)."""
    if model_file is None:
        if config.platform in _MODEL_FREE_PLATFORMS:
            return None
        raise ConfigError(
            f"model '{config.name}' ({config.platform or config.backend}) needs a model file; only ensembles have none"
        )
    filename = model_filename(config)
    if filename is None:
        raise ConfigError(f"model '{config.name}': cannot tell the model file name; set default_model_filename")
    if not model_file.is_file():
        raise ConfigError(f"model file {model_file} does not exist")
    return filename


@contextlib.contextmanager
def _created_dir(path: Path) -> Iterator[None]:
    """Create `path` if needed; if it was created here and the block fails, remove it again (when empty)."""
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _check_extra_files(model: str, extra_files: Mapping[str, Path], reserved: set[str]) -> dict[str, Path]:
    """Validate extra file names (relative paths inside the version folder) and their sources."""
    checked: dict[str, Path] = {}
    for name, source in extra_files.items():
        relative = PurePosixPath(name)
        if not name or relative.is_absolute() or any(part in {"", ".", ".."} for part in name.split("/")):
            raise ConfigError(
                f"model '{model}': extra file name {name!r} must be a relative path inside the version folder, "
                "e.g. 'tokenizer.json' or 'assets/vocab.txt', without '..'"
            )
        if relative.as_posix() in reserved:
            raise ConfigError(f"model '{model}': extra file {name!r} would replace the {name} tritonforge writes")
        if not Path(source).is_file():
            raise ConfigError(f"model '{model}': extra file {name!r} comes from {source}, which is not a file")
        checked[relative.as_posix()] = Path(source)
    return checked


def _copy_in(stage: Path, name: str, source: Path) -> str:
    target = stage / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        shutil.copyfile(source, tmp)
    return sha256_file(target)


def _stage(
    stage: Path, model_file: Path | None, filename: str | None, extra_files: dict[str, Path], manifest: dict[str, Any]
) -> dict[str, Any]:
    full = dict(manifest)
    if model_file is not None and filename is not None:
        full.update(model_file=filename, sha256=_copy_in(stage, filename, model_file))
    else:
        full.update(model_file=None, sha256=None)
    if extra_files:
        full["extra_files"] = {name: _copy_in(stage, name, source) for name, source in sorted(extra_files.items())}
    full.setdefault("tool_versions", tool_versions())
    full["created_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(stage / MANIFEST_NAME, json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


def _swap_in(stage: Path, target: Path, config_path: Path, config_text: str, *, overwrite: bool) -> None:
    """Publish `stage` as `target` in one rename, then replace config.pbtxt; undo the rename if that fails.

    Replacing a version exchanges the two folders atomically: the old version is at `stage` afterwards (the caller
    removes it), and at no moment does it live only under a hidden name.
    """
    try:
        with published_dir(stage, target, replace=overwrite):
            atomic_write_text(config_path, config_text)
    except FileExistsError:  # another writer took this version number since it was chosen
        raise ConfigError(
            f"{target} appeared while writing it; run the export again to take the next version"
        ) from None


def add_version(
    *,
    repository: Path,
    config: model_config_pb2.ModelConfig,
    model_file: Path | None,
    manifest: dict[str, Any],
    version: int | None = None,
    overwrite: bool = False,
    extra_files: Mapping[str, Path] | None = None,
) -> Path:
    """Add a model file to the repository as a new version, with its manifest, and (re)write config.pbtxt.

    Args:
        repository: the model repository root (created if missing).
        config: the model's config; `config.name` is the model's folder.
        model_file: the file to copy in (named `model.onnx`, `model.plan`... after the platform); None for an
            ensemble, whose version folder holds only the manifest (Triton needs the folder to exist).
        manifest: what to record beside the model (source, export settings, parity figures); the sha256,
            model file name, extra files' sha256, tool versions and creation time are added here.
        version: the version number; default: one above the highest existing version (1 for a new model).
        overwrite: allow replacing an existing `version`.
        extra_files: more files the model reads, by their path inside the version folder (e.g.
            {"tokenizer.json": Path("build/tokenizer.json")}); copied in with the model file, in the same atomic step.

    Returns:
        The version folder, `<repository>/<model>/<version>`.

    Raises:
        ConfigError: bad model name, unknown model file name, missing model or extra file, a model file missing for
            a platform that needs one, or the version exists and overwrite is False.
    """
    validate_model_name(config.name)
    filename = _checked_model_file(config, model_file)
    reserved = {MANIFEST_NAME} | ({filename} if filename else set())
    extras = _check_extra_files(str(config.name), extra_files or {}, reserved)
    model_dir = repository / str(config.name)
    target_version = resolve_version(model_dir, version, overwrite=overwrite)
    target = model_dir / str(target_version)
    config_text = config_to_text(config)
    with _created_dir(repository), _created_dir(model_dir):
        stage = staging_dir(model_dir, f".staging-{target_version}-")
        try:
            _stage(stage, model_file, filename, extras, {**manifest, "model": config.name, "version": target_version})
            _swap_in(stage, target, model_dir / CONFIG_NAME, config_text, overwrite=overwrite)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    _LOGGER.info("wrote %s (version %d of '%s')", target, target_version, config.name)
    return target
