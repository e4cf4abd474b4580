"""What a new version would change in a model's served signature, checked before the repository is touched.

    change = signature_change(model_dir, new_config, new_signature=False)  # ConfigError naming what differs
    if change:                                                              # only with new_signature=True
        manifest["signature_change"] = change                              # {"old": ..., "new": ..., "differences"}

Triton serves every version of a model under one config.pbtxt, so a version whose inputs, outputs or
max_batch_size differ replaces the signature clients of the model were written against. That is refused unless the
caller says it is meant; then the old and the new signature are recorded in the version's manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonforge.converters.triton_config import read_config
from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

CONFIG_NAME = "config.pbtxt"


def _tensors(tensors: Any) -> list[dict[str, Any]]:
    from tritonclient.grpc import model_config_pb2

    return [
        {"name": t.name, "data_type": model_config_pb2.DataType.Name(t.data_type), "dims": [int(d) for d in t.dims]}
        for t in tensors
    ]


def config_signature(config: model_config_pb2.ModelConfig) -> dict[str, Any]:
    """The part of a config clients depend on: inputs and outputs (name, data type, dims) and max_batch_size."""
    return {
        "max_batch_size": int(config.max_batch_size),
        "inputs": _tensors(config.input),
        "outputs": _tensors(config.output),
    }


def _tensor_differences(role: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    old_by_name = {t["name"]: t for t in old}
    new_by_name = {t["name"]: t for t in new}
    if list(old_by_name) != list(new_by_name):
        return [f"{role}s {list(old_by_name)} -> {list(new_by_name)}"]
    differences = []
    for name, before in old_by_name.items():
        after = new_by_name[name]
        for field in ("data_type", "dims"):
            if before[field] != after[field]:
                differences.append(f"{role} '{name}' {field} {before[field]} -> {after[field]}")
    return differences


def signature_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Each difference between two `config_signature`s, as short text ("input 'ids' dims [-1] -> [16]")."""
    differences = []
    if old["max_batch_size"] != new["max_batch_size"]:
        differences.append(f"max_batch_size {old['max_batch_size']} -> {new['max_batch_size']}")
    differences += _tensor_differences("input", old["inputs"], new["inputs"])
    differences += _tensor_differences("output", old["outputs"], new["outputs"])
    return differences


def signature_change(
    model_dir: Path, config: model_config_pb2.ModelConfig, *, new_signature: bool
) -> dict[str, Any] | None:
    """Compare a new config with the model's config.pbtxt; refuse a change unless `new_signature`.

    Args:
        model_dir: `<repository>/<model>`; a model without a config.pbtxt has no signature to keep.
        config: the config the new version would write.
        new_signature: the caller means to change the signature (--new-signature).

    Returns:
        None when nothing changes (or the model is new); else {"old", "new", "differences"} for the manifest.

    Raises:
        ConfigError: the signature differs and `new_signature` is False, or the existing config.pbtxt is unreadable.
    """
    path = model_dir / CONFIG_NAME
    if not path.is_file():
        return None
    old = config_signature(read_config(path))
    new = config_signature(config)
    differences = signature_differences(old, new)
    if not differences:
        return None
    if not new_signature:
        raise ConfigError(
            f"model '{model_dir.name}' in {model_dir.parent} has another signature ({'; '.join(differences)}): "
            f"clients of '{model_dir.name}' would break; pass --new-signature (new_signature=True) to replace it, "
            "or --name to export a new model"
        )
    return {"old": old, "new": new, "differences": differences}
