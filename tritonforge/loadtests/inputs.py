"""The arrays a load test sends: random data shaped from the model's metadata, or a sample file as it is.

    client = TritonClient("127.0.0.1:8001")
    tensors = client.model_inputs("digits")                     # [TensorInfo('image', 'FP32', (-1, 1, 8, 8))]
    inputs = random_inputs(tensors, max_batch_size=client.max_batch_size("digits"), batch_size=8, seed=0)
    inputs = sample_inputs(Path("request.npz"), tensors, max_batch_size=64)   # or a real request

Random data is enough to measure a model whose cost does not depend on the values (most vision and tabular
models); send a real sample (.npy for a one-input model, .npz keyed by input name) when it does, or when an
input has a dynamic dimension other than the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonforge.client import TensorInfo

__all__ = ["build_inputs", "random_inputs", "sample_inputs", "save_inputs"]

_BYTES_VALUE = b"tritonforge load test"


def build_inputs(
    tensors: Sequence[TensorInfo],
    *,
    max_batch_size: int,
    batch_size: int = 1,
    seed: int = 0,
    sample_path: Path | None = None,
) -> dict[str, NDArray[Any]]:
    """Build one request's inputs: from `sample_path` when given, else random data from the metadata.

    Args:
        tensors: the model's inputs, as `TritonClient.model_inputs` returns them.
        max_batch_size: the model's max_batch_size (0 when it does not batch).
        batch_size: items per request for random data; a sample file is sent as it is.
        seed: seed of the random generator, so two runs send the same data.
        sample_path: a .npy (one-input models) or .npz (keyed by input name) file.

    Returns:
        The arrays to send, by input name.

    Raises:
        ConfigError: see `random_inputs` and `sample_inputs`.
    """
    if sample_path is not None:
        return sample_inputs(sample_path, tensors, max_batch_size=max_batch_size)
    return random_inputs(tensors, max_batch_size=max_batch_size, batch_size=batch_size, seed=seed)


def random_inputs(
    tensors: Sequence[TensorInfo],
    *,
    max_batch_size: int,
    batch_size: int = 1,
    seed: int = 0,
) -> dict[str, NDArray[Any]]:
    """Random arrays of each required input's dtype and shape, with `batch_size` items.

    Floats are standard normal, integers lie in [0, 100) (valid as token ids or class indices for most
    models), booleans are fair coin flips, BYTES inputs repeat one short string. Optional inputs are left out.

    Args:
        tensors: the model's inputs; shapes include the batch dimension (-1) when the model batches.
        max_batch_size: the model's max_batch_size (0 when it does not batch).
        batch_size: items per request; must be 1 for a model that does not batch.
        seed: seed of the random generator.

    Returns:
        The arrays to send, by input name.

    Raises:
        ConfigError: batch_size is out of range for the model, or an input has a dynamic dimension other than the
            batch (its size cannot be guessed: pass a sample file).
    """
    _check_batch_size(batch_size, max_batch_size)
    rng = np.random.default_rng(seed)
    inputs: dict[str, NDArray[Any]] = {}
    for tensor in tensors:
        if tensor.optional:
            continue
        dims = list(tensor.shape)
        if max_batch_size > 0:
            dims[0] = batch_size
        if any(dim < 0 for dim in dims):
            raise ConfigError(
                f"input '{tensor.name}' has a dynamic dimension ({tensor.describe()}) whose size cannot be guessed; "
                "pass a sample request with --sample (.npy or .npz keyed by input name)"
            )
        inputs[tensor.name] = _random_array(rng, tensor, tuple(dims))
    return inputs


def sample_inputs(path: Path, tensors: Sequence[TensorInfo], *, max_batch_size: int) -> dict[str, NDArray[Any]]:
    """Read a request from a .npy file (one-input models) or a .npz file keyed by input name.

    An array that lacks the batch dimension of a batching model is sent as a batch of one. Strings must be
    stored as fixed-width bytes or unicode (`np.array([b"text"])`): object arrays would need pickle, which
    this refuses to load.

    Args:
        path: the sample file.
        tensors: the model's inputs.
        max_batch_size: the model's max_batch_size (0 when it does not batch).

    Returns:
        The arrays to send, by input name.

    Raises:
        ConfigError: the file is missing or unreadable, names unknown inputs, lacks a required one, or holds an
            array of the wrong dtype or shape.
    """
    arrays = _load_sample(path, tensors)
    by_name = {tensor.name: tensor for tensor in tensors}
    unknown = sorted(set(arrays) - set(by_name))
    if unknown:
        raise ConfigError(
            f"sample {path} holds {unknown}, which are not inputs of the model; its inputs: {_names(tensors)}"
        )
    missing = [t.name for t in tensors if not t.optional and t.name not in arrays]
    if missing:
        raise ConfigError(f"sample {path} lacks input(s) {missing}; save one array per input name in an .npz file")
    inputs = {}
    for name, array in arrays.items():
        tensor = by_name[name]
        if max_batch_size > 0 and array.ndim == len(tensor.shape) - 1:
            array = array[np.newaxis, ...]
        if not (tensor.accepts_dtype(array.dtype) and tensor.accepts_shape(array.shape)):
            raise ConfigError(
                f"sample {path}: input '{name}' must be {tensor.describe()}, got {array.dtype} {list(array.shape)}"
            )
        if tensor.datatype == "BYTES":
            array = array.astype(np.object_)
        inputs[name] = array
    if max_batch_size > 0:
        _check_batch_size(int(next(iter(inputs.values())).shape[0]), max_batch_size)
    return inputs


def save_inputs(path: Path, inputs: Mapping[str, NDArray[Any]]) -> Path:
    """Write a request to an .npz file that `sample_inputs` reads back (so a run can be repeated exactly).

    Args:
        path: the .npz file to write.
        inputs: the arrays, by input name.

    Returns:
        `path`.
    """
    storable = {name: array.astype(np.bytes_) if array.dtype == np.object_ else array for name, array in inputs.items()}
    with path.open("wb") as handle:
        np.savez(handle, **storable)
    return path


def _load_sample(path: Path, tensors: Sequence[TensorInfo]) -> dict[str, NDArray[Any]]:
    if not path.is_file():
        raise ConfigError(f"sample file {path} does not exist; pass an existing .npy or .npz file to --sample")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"sample file {path} is not a readable .npy/.npz file without pickled objects: {exc}"
        ) from exc
    if isinstance(loaded, np.ndarray):
        required = [t.name for t in tensors if not t.optional]
        if len(required) != 1:
            raise ConfigError(
                f"sample {path} is a single array but the model needs inputs {required}; "
                "save them in an .npz file keyed by input name"
            )
        return {required[0]: loaded}
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def _random_array(rng: np.random.Generator, tensor: TensorInfo, shape: tuple[int, ...]) -> NDArray[Any]:
    dtype = tensor.np_dtype
    if tensor.datatype == "BYTES":
        return np.full(shape, _BYTES_VALUE, dtype=np.object_)
    if tensor.datatype == "BOOL":
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 100, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _check_batch_size(batch_size: int, max_batch_size: int) -> None:
    if max_batch_size == 0 and batch_size != 1:
        raise ConfigError(f"the model does not batch (max_batch_size 0), so batch size must be 1, got {batch_size}")
    if max_batch_size > 0 and not 1 <= batch_size <= max_batch_size:
        raise ConfigError(
            f"batch size must be between 1 and the model's max_batch_size {max_batch_size}, got {batch_size}"
        )


def _names(tensors: Sequence[TensorInfo]) -> list[str]:
    return [tensor.name for tensor in tensors]
