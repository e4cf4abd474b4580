"""Real example inputs from a file (`tritonforge export --sample FILE`): traced on and compared by the parity gate.

    sample = load_sample(Path("batch.npz"), specs)   # .npz keyed by input name, .npy (one input), .json {name: list}
    sample(8)["input_ids"].shape                     # (8, 12): the file's rows, repeated to fill the batch

Every array has the batch axis first and the spec's dtype (or one that casts to it without changing kind: JSON
integers become int64 ids, JSON floats float32). The parity gate compares the file's rows at their own sizes and
generates the other axis sizes with the value range each integer input shows in the file.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge.converters.parity import SampleFn
from tritonforge.converters.specs import DYNAMIC_DIM, TensorSpec
from tritonforge.errors import ConfigError

SAMPLE_SUFFIXES = (".npz", ".npy", ".json")


def _read(path: Path, names: list[str]) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise ConfigError(f"sample {path} must be .npz (arrays by input name), .npy (one input) or .json")
    if not path.is_file():
        raise ConfigError(f"sample file {path} does not exist")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        if suffix == ".npy":
            if len(names) != 1:
                raise ConfigError(
                    f"sample {path} is one .npy array but the model has inputs {names}; save an .npz keyed by name"
                )
            return {names[0]: np.load(path, allow_pickle=False)}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"sample {path} cannot be read: {' '.join(str(exc).split())[:200]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"sample {path} must hold a JSON object {{input name: nested list}}")
    return data


def _array(path: Path, spec: TensorSpec, value: Any) -> npt.NDArray[Any]:
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ConfigError(f"sample {path}: input '{spec.name}' is not a rectangular array ({exc})") from exc
    want = np.dtype(spec.dtype)
    if array.dtype != want:
        if array.dtype.kind == "O" or not np.can_cast(array.dtype, want, casting="same_kind"):
            raise ConfigError(f"sample {path}: input '{spec.name}' is {array.dtype}; the spec says {spec.dtype}")
        array = array.astype(want)
    fixed = [i for i, d in enumerate(spec.shape) if array.ndim == len(spec.shape) + 1 and d != DYNAMIC_DIM]
    if array.ndim != len(spec.shape) + 1 or any(array.shape[i + 1] != spec.shape[i] for i in fixed):
        raise ConfigError(
            f"sample {path}: input '{spec.name}' has shape {list(array.shape)}; it must be [batch, "
            f"{', '.join(spec.shape_text().split('x')) if spec.shape else ''}] (the batch axis first)"
        )
    if array.shape[0] < 1:
        raise ConfigError(f"sample {path}: input '{spec.name}' has no rows")
    return np.ascontiguousarray(array)


def load_sample_arrays(path: Path, inputs: Sequence[TensorSpec]) -> dict[str, npt.NDArray[Any]]:
    """Read a sample file into one array per input, checked against the specs.

    Raises:
        ConfigError: a missing or unreadable file, an unknown suffix, inputs missing or extra, a dtype that does
            not cast to the spec's, a shape that does not fit it, or inputs with different numbers of rows.
    """
    names = [spec.name for spec in inputs]
    raw = _read(path, names)
    unknown = sorted(set(raw) - set(names))
    missing = [n for n in names if n not in raw]
    if unknown or missing:
        raise ConfigError(f"sample {path} holds {sorted(raw)}; the model's inputs are {names}")
    arrays = {spec.name: _array(path, spec, raw[spec.name]) for spec in inputs}
    rows = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(rows.values())) > 1:
        raise ConfigError(f"sample {path}: inputs have different numbers of rows {rows}; give each the same batch")
    return arrays


def sample_from_arrays(arrays: dict[str, npt.NDArray[Any]]) -> SampleFn:
    """A SampleFn that returns the arrays' first rows, repeated in order when a batch needs more rows than given."""

    def sample(batch_size: int) -> dict[str, npt.NDArray[Any]]:
        rows = np.arange(batch_size) % next(iter(arrays.values())).shape[0]
        return {name: array[rows] for name, array in arrays.items()}

    return sample


def load_sample(path: Path, inputs: Sequence[TensorSpec]) -> SampleFn:
    """Read a sample file (see `load_sample_arrays`) as a SampleFn for the exporter and the parity gate."""
    return sample_from_arrays(load_sample_arrays(path, inputs))
