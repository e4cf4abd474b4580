"""Check each model version's files against the sha256 its manifest recorded, before a server may load them.

    checked = verify_repository(Path("model_repository"))   # raises ServerError on the first mismatch
    checked.unverified   # versions without a manifest.json (hand-written), served with a warning

Why: a model file that changed after tritonforge wrote it (a half-copied sync, a file edited by hand, a swapped
engine) would otherwise be served silently under the version number that was validated. What a manifest records
(tritonforge/converters/repository.py `_stage`, tensorrt_repository.py):

    model_file, sha256            the file Triton loads from the version folder and its hash (None for an ensemble)
    extra_files                   {relative path: sha256} for files the model reads at load time (a tokenizer)
    tensorrt.engines              {compute capability: {"file": ..., "sha256": ...}} for TensorRT versions
    source, tool_versions, created_at, ...   provenance, not checked here

Every recorded file must exist and match. For a TensorRT version the per-engine hashes win over the top-level one:
adding or rebuilding an engine rewrites `tensorrt.engines` but keeps the top-level sha256 of the first engine.
Files a manifest does not name (e.g. a README) are not checked. The check runs once before start: with
`--model-control-mode=poll` later changes on disk are not checked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tritonforge.converters.repository import MANIFEST_NAME, read_manifest, sha256_file, version_numbers
from tritonforge.errors import ConfigError, ServerError

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedRepository:
    """What `verify_repository` checked.

    Attributes:
        files: how many files matched their recorded sha256.
        versions: the "<model>/<version>" folders whose manifests were checked.
        unverified: the "<model>/<version>" folders that have no manifest.json (nothing to check against).
    """

    files: int = 0
    versions: tuple[str, ...] = field(default=())
    unverified: tuple[str, ...] = field(default=())


def recorded_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Return {relative path: sha256} of every file a manifest vouches for."""
    files: dict[str, str] = {}
    if manifest.get("model_file") and manifest.get("sha256"):
        files[str(manifest["model_file"])] = str(manifest["sha256"])
    for name, digest in (manifest.get("extra_files") or {}).items():
        files[str(name)] = str(digest)
    engines = (manifest.get("tensorrt") or {}).get("engines") or {}
    for entry in engines.values():
        if isinstance(entry, dict) and entry.get("file") and entry.get("sha256"):
            files[str(entry["file"])] = str(entry["sha256"])  # newer than the top-level hash of the same file
    return files


def verify_repository(repository: Path) -> VerifiedRepository:
    """Check every version that has a manifest; refuse the first file that is missing or differs.

    Raises:
        ServerError: a recorded file is missing, escapes its version folder, or its sha256 differs (the message
            names the file); or a manifest.json is unreadable.
    """
    checked = 0
    versions: list[str] = []
    unverified: list[str] = []
    for version_dir in _version_dirs(repository):
        label = f"{version_dir.parent.name}/{version_dir.name}"
        if not (version_dir / MANIFEST_NAME).is_file():
            unverified.append(label)
            continue
        try:
            manifest = read_manifest(version_dir)
        except ConfigError as exc:
            raise ServerError(f"refusing to serve {label}: {exc}") from None
        for name, expected in sorted(recorded_files(manifest).items()):
            _verify_file(version_dir, name, expected)
            checked += 1
        versions.append(label)
    if unverified:
        _LOGGER.warning(
            "not verified (no %s): %s; versions written by tritonforge carry one", MANIFEST_NAME, ", ".join(unverified)
        )
    _LOGGER.info("verified %d file(s) in %d version(s) against their manifests", checked, len(versions))
    return VerifiedRepository(files=checked, versions=tuple(versions), unverified=tuple(unverified))


def _version_dirs(repository: Path) -> Iterator[Path]:
    if not repository.is_dir():
        return
    for model_dir in sorted(p for p in repository.iterdir() if (p / "config.pbtxt").is_file()):
        for number in version_numbers(model_dir):
            yield model_dir / str(number)


def _verify_file(version_dir: Path, name: str, expected: str) -> None:
    path = version_dir / name
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ServerError(f"refusing to serve {path}: its manifest names a file outside the version folder")
    if not path.is_file():
        raise ServerError(
            f"refusing to serve {path}: the file its manifest records is missing; restore it or write the version again"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise ServerError(
            f"refusing to serve {path}: sha256 {actual[:12]}… differs from {expected[:12]}… in its {MANIFEST_NAME}; "
            "the file changed after it was written: restore it or write the version again"
        )
