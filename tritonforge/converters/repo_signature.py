"""A repository model's signature, as its clients will see it once served: config.pbtxt plus the graph's dim names.

    signature = repository_signature(Path("model_repository"), "bert", version=None)   # the latest version
    signature.inputs[0].dims   # ("seq",): the ONNX graph's dim_param where config.pbtxt only says -1

config.pbtxt says what Triton serves (names, data types, dims, max_batch_size); an ONNX graph adds the names of its
symbolic axes, which tell which dims are shared ("input_ids" and "attention_mask" both [batch, seq]).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonforge.converters.onnx_graph import GraphTensor, read_onnx_signature
from tritonforge.converters.repository import CONFIG_NAME, model_filename, version_numbers
from tritonforge.converters.specs import DYNAMIC_DIM, triton_to_numpy
from tritonforge.converters.triton_config import read_config
from tritonforge.errors import ConfigError
from tritonforge.signature import ModelSignature, SignatureTensor

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

__all__ = ["repository_signature"]

_LOGGER = logging.getLogger(__name__)

_ONNX_RUNTIMES = {"onnxruntime_onnx", "onnxruntime"}


def _dim_names(tensor: GraphTensor, *, batched: bool) -> tuple[str | None, ...] | None:
    """The graph's symbolic dim names without the batch axis, or None when the graph names none."""
    if tensor.dim_names is None:
        return None
    return tensor.dim_names[1:] if batched else tensor.dim_names


def _tensor(entry: Any, graph: GraphTensor | None, *, batched: bool) -> SignatureTensor:
    from tritonclient.grpc import model_config_pb2

    data_type = model_config_pb2.DataType.Name(entry.data_type)
    try:
        dtype = triton_to_numpy(data_type)
    except ConfigError:
        dtype = data_type.removeprefix("TYPE_").lower()  # shown as Triton has it rather than refused
    dims: list[int | str] = [int(d) for d in entry.dims]
    names = _dim_names(graph, batched=batched) if graph is not None and not entry.HasField("reshape") else None
    if names is not None and len(names) == len(dims):
        dims = [name if dim == DYNAMIC_DIM and name else dim for dim, name in zip(dims, names, strict=True)]
    return SignatureTensor(name=entry.name, dtype=dtype, dims=tuple(dims))


def _graph_tensors(
    model_dir: Path, version: int | None, config: model_config_pb2.ModelConfig
) -> dict[str, GraphTensor]:
    """The version's ONNX graph tensors by name, or {} when there is no ONNX file to read (not an error here)."""
    filename = model_filename(config)
    if version is None or filename is None or (config.platform or config.backend) not in _ONNX_RUNTIMES:
        return {}
    path = model_dir / str(version) / filename
    if not path.is_file():
        _LOGGER.info("no %s: dims as config.pbtxt gives them", path)
        return {}
    graph = read_onnx_signature(path)
    return {t.name: t for t in (*graph.inputs, *graph.outputs)}


def repository_signature(repository: Path, model: str, *, version: int | None = None) -> ModelSignature:
    """Describe a repository model's inputs and outputs from its config.pbtxt and, for ONNX, its graph's dim names.

    Args:
        repository: the model repository root.
        model: the model's folder name.
        version: the version whose graph names the dims; None: the latest version folder.

    Returns:
        The signature; a version is named only when there is one.

    Raises:
        ConfigError: the repository, model or version does not exist, or config.pbtxt or the graph is unreadable.
    """
    model_dir = repository / model
    if not (model_dir / CONFIG_NAME).is_file():
        known = (
            sorted(p.name for p in repository.iterdir() if (p / CONFIG_NAME).is_file()) if repository.is_dir() else []
        )
        raise ConfigError(
            f"no model '{model}' in {repository} (models: {', '.join(known) or 'none'}); "
            "check the name and --repository"
        )
    config = read_config(model_dir / CONFIG_NAME)
    versions = version_numbers(model_dir)
    if version is not None and version not in versions:
        raise ConfigError(f"model '{model}' has no version {version} (versions: {versions or 'none'})")
    chosen = version if version is not None else (versions[-1] if versions else None)
    graph = _graph_tensors(model_dir, chosen, config)
    batched = config.max_batch_size > 0
    return ModelSignature(
        name=model,
        version=str(chosen) if chosen is not None else None,
        platform=config.platform or config.backend,
        inputs=tuple(_tensor(e, graph.get(e.name), batched=batched) for e in config.input),
        outputs=tuple(_tensor(e, graph.get(e.name), batched=batched) for e in config.output),
        max_batch_size=int(config.max_batch_size),
    )
