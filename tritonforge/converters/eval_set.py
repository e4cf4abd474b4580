"""Evaluation and calibration sets: real inputs in batches, optional labels, and a hash that names the data.

    digits = EvalSet.from_arrays({"image": images}, labels=labels, batch_size=64)
    text = EvalSet(batches=(tokenized_batch_0, tokenized_batch_1, ...))  # ragged sequences: one padding per batch
    EvalSet.from_npz(Path("eval.npz"), batch_size=64)                     # the CLI's form; "labels" is the labels key

Batches are kept as given, so a text set padded to each batch's longest sentence stays that way; the hash covers
every array's name, dtype, shape and bytes in order, so a manifest can say exactly which data calibrated or gated a
model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge.errors import ConfigError

LABELS_KEY = "labels"


@dataclass(frozen=True, kw_only=True)
class EvalSet:
    """Model inputs in batches (each a dict name -> array with a leading batch axis) and optional labels.

    Attributes:
        batches: the batches in order; every batch has the same input names.
        labels: one label per item across all batches (classifiers), or None.
    """

    batches: tuple[dict[str, npt.NDArray[Any]], ...]
    labels: npt.NDArray[Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.batches, list):
            object.__setattr__(self, "batches", tuple(self.batches))
        if not self.batches:
            raise ConfigError("the evaluation set is empty; give at least one batch of inputs")
        names = set(self.batches[0])
        if not names:
            raise ConfigError("the evaluation set's batches hold no inputs")
        for index, batch in enumerate(self.batches):
            if set(batch) != names:
                raise ConfigError(f"batch {index} has inputs {sorted(batch)}, batch 0 has {sorted(names)}")
            sizes = {len(array) for array in batch.values()}
            if len(sizes) != 1:
                raise ConfigError(f"batch {index}: inputs disagree on the batch size ({sorted(sizes)})")
        if self.labels is not None and len(self.labels) != self.num_items:
            raise ConfigError(f"{len(self.labels)} labels for {self.num_items} evaluation items; give one per item")

    @property
    def input_names(self) -> list[str]:
        """The model input names, in the first batch's order."""
        return list(self.batches[0])

    @property
    def num_items(self) -> int:
        """The number of items across all batches."""
        return sum(len(next(iter(batch.values()))) for batch in self.batches)

    def sha256(self) -> str:
        """Return a hex SHA-256 over every array's name, dtype, shape and bytes (and the labels), in order."""
        digest = hashlib.sha256()
        arrays: list[tuple[str, npt.NDArray[Any]]] = [
            (name, array) for batch in self.batches for name, array in batch.items()
        ]
        if self.labels is not None:
            arrays.append((LABELS_KEY, self.labels))
        for name, array in arrays:
            contiguous = np.ascontiguousarray(array)
            digest.update(f"{name}|{contiguous.dtype.str}|{contiguous.shape}|".encode())
            digest.update(contiguous.tobytes())
        return digest.hexdigest()

    @classmethod
    def from_arrays(
        cls, inputs: Mapping[str, npt.NDArray[Any]], *, labels: npt.NDArray[Any] | None = None, batch_size: int = 64
    ) -> EvalSet:
        """Split whole arrays (leading axis = items) into batches of `batch_size`.

        Raises:
            ConfigError: no inputs, inputs of different lengths, or batch_size < 1.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size {batch_size} must be >= 1")
        if not inputs:
            raise ConfigError("the evaluation set needs at least one input array")
        lengths = {name: len(array) for name, array in inputs.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"evaluation inputs have different lengths {lengths}; give one row per item in each")
        total = next(iter(lengths.values()))
        batches = tuple(
            {name: np.asarray(array[start : start + batch_size]) for name, array in inputs.items()}
            for start in range(0, total, batch_size)
        )
        return cls(batches=batches, labels=None if labels is None else np.asarray(labels))

    @classmethod
    def from_npz(cls, path: Path, *, batch_size: int = 64) -> EvalSet:
        """Load an .npz of whole input arrays keyed by input name, plus an optional "labels" array.

        Raises:
            ConfigError: the file is missing or not an .npz, or its arrays do not fit together.
        """
        if not path.is_file():
            raise ConfigError(f"evaluation set {path} does not exist; save one with numpy.savez(path, input=..., ...)")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not a readable .npz file ({exc}); save it with numpy.savez") from exc
        labels = arrays.pop(LABELS_KEY, None)
        return cls.from_arrays(arrays, labels=labels, batch_size=batch_size)
