"""PyTorch model -> a new, gated version in a Triton model repository: the one call the CLI and the examples use.

    model = load_factory("tritonforge.examples.digits:build_model", weights=Path("build/digits_cnn.pt"))
    exported = export_to_repository(model=model, inputs=[TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")],
                                    output_names=["logits"], repository=Path("model_repository"),
                                    model_name="digits", source="tritonforge.examples.digits:build_model")
    print(exported.model_dir / str(exported.version))

Order matters: export to a temporary folder, run the parity gate, and only then touch the repository, so a failed
export or gate leaves the repository exactly as it was. config.pbtxt's inputs and outputs come from the exported graph
(batch axis removed, dynamic sizes as -1), so the config always describes the file that was written.
"""

from __future__ import annotations

import importlib
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonforge.converters.onnx_graph import batched_specs, read_onnx_signature
from tritonforge.converters.parity import ParityReport, SampleFn, check_parity
from tritonforge.converters.repository import add_version, read_manifest, resolve_version
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.torch2onnx import MIN_OPSET, export_torch_to_onnx
from tritonforge.converters.triton_config import (
    InstanceKind,
    ModelConfigSpec,
    build_model_config,
    validate_model_name,
)
from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

_LOGGER = logging.getLogger(__name__)

PARITY_LARGE_BATCH = 8
_FACTORY_SPEC = re.compile(r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*)$")


@dataclass(frozen=True, kw_only=True)
class ExportedVersion:
    """A version that passed the gate and is in the repository.

    Attributes:
        model_dir: `<repository>/<model>`.
        version: the version number written.
        onnx_path: the model file inside the version folder.
        parity: the parity gate's figures.
        manifest: the content of the version's manifest.json.
    """

    model_dir: Path
    version: int
    onnx_path: Path
    parity: ParityReport
    manifest: dict[str, Any]


def load_factory(spec: str, weights: Path | None = None) -> torch.nn.Module:
    """Build a model from "package.module:factory", optionally loading a state dict, and put it in eval mode.

    Args:
        spec: a module path and the name of a function in it that takes no arguments and returns an nn.Module.
        weights: a state dict saved with torch.save; loaded with `weights_only=True` (no arbitrary pickles).

    Returns:
        The model, in eval mode.

    Raises:
        ConfigError: a malformed spec, a module or attribute that does not exist, a factory that does not return an
            nn.Module, or weights that are missing, not a weights-only state dict, or do not fit the model.
    """
    import torch

    match = _FACTORY_SPEC.match(spec)
    if match is None:
        raise ConfigError(
            f"model spec {spec!r} must look like package.module:factory, e.g. tritonforge.examples.digits:build_model"
        )
    module_name, attr = match["module"], match["attr"]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import '{module_name}' for {spec}: {exc}; check the name and PYTHONPATH") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"module '{module_name}' has no function '{attr}'; check the part after ':' in {spec}")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        _load_weights(model, weights)
    return model.eval()


def _load_weights(model: torch.nn.Module, weights: Path) -> None:
    from tritonforge.converters.weights import load_weights

    load_weights(model, weights)


def _validate(model_name: str, max_batch_size: int, max_queue_delay_us: int, instance_count: int) -> None:
    validate_model_name(model_name)
    if max_batch_size < 1:
        raise ConfigError(f"max_batch_size {max_batch_size} must be >= 1: an exported model has a dynamic batch axis")
    if max_queue_delay_us < 0:
        raise ConfigError(f"max_queue_delay_us {max_queue_delay_us} must be >= 0")
    if instance_count < 1:
        raise ConfigError(f"instance_count {instance_count} must be >= 1")


def _config_from_graph(
    onnx_path: Path,
    *,
    model_name: str,
    max_batch_size: int,
    max_queue_delay_us: int,
    instance_count: int,
    instance_kind: InstanceKind,
) -> ModelConfigSpec:
    """Describe the exported file itself: inputs and outputs come from the graph, batch axis removed."""
    signature = read_onnx_signature(onnx_path)
    return ModelConfigSpec(
        name=model_name,
        max_batch_size=max_batch_size,
        inputs=batched_specs(signature.inputs),
        outputs=batched_specs(signature.outputs),
        max_queue_delay_us=max_queue_delay_us,
        instance_count=instance_count,
        instance_kind=instance_kind,
    )


def _export_settings(
    spec: ModelConfigSpec, inputs: Sequence[TensorSpec], opset: int, *, sampled: bool
) -> dict[str, Any]:
    return {
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "opset": opset,
        "parity_inputs": "caller's sample()" if sampled else "random (specs.sample_inputs)",
        "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in inputs],
        "outputs": [o.name for o in spec.outputs],
        "max_batch_size": spec.max_batch_size,
        "max_queue_delay_us": spec.max_queue_delay_us,
        "instance_count": spec.instance_count,
        "instance_kind": spec.instance_kind.value,
    }


def export_to_repository(
    *,
    model: torch.nn.Module,
    inputs: Sequence[TensorSpec],
    repository: Path,
    model_name: str,
    source: str,
    output_names: Sequence[str] | None = None,
    max_batch_size: int = 64,
    max_queue_delay_us: int = 100,
    instance_count: int = 1,
    instance_kind: InstanceKind = InstanceKind.AUTO,
    opset: int = MIN_OPSET,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    version: int | None = None,
    overwrite: bool = False,
    sample: SampleFn | None = None,
) -> ExportedVersion:
    """Export a model to ONNX, gate it on parity with torch, and add it to the repository as a new version.

    Args:
        model: the module to export.
        inputs: its forward() arguments in order, shapes without the batch axis.
        repository: the model repository root.
        model_name: the model's name in Triton (its folder).
        source: where the model came from, recorded in the manifest (e.g. "pkg.module:factory").
        output_names: names for the outputs; default: dict keys or output_0, output_1, ...
        max_batch_size: largest batch Triton may form.
        max_queue_delay_us: dynamic batching's queue delay.
        instance_count: model instances per device.
        instance_kind: where instances run; AUTO means GPU when the server has one.
        opset: ONNX opset (17 to 20).
        atol: parity gate absolute tolerance.
        rtol: parity gate relative tolerance.
        version: the version to write; default: the next integer.
        overwrite: allow replacing an existing `version`.
        sample: real inputs for the parity gate, as a function of the batch size (e.g. tokenized sentences for a
            text model, whose attention mask random integers would break); None gates on random inputs.

    Returns:
        What was written, with the gate's figures.

    Raises:
        ConfigError: bad arguments, or the version exists and overwrite is False.
        ConversionError: the export failed.
        ParityError: ONNX Runtime disagrees with torch; nothing is written.
    """
    _validate(model_name, max_batch_size, max_queue_delay_us, instance_count)
    resolve_version(repository / model_name, version, overwrite=overwrite)  # fail before the export's work
    batch_sizes = sorted({1, min(PARITY_LARGE_BATCH, max_batch_size)})
    with tempfile.TemporaryDirectory(prefix="tritonforge-export-") as tmp:
        onnx_path = export_torch_to_onnx(
            model=model, inputs=inputs, output_path=Path(tmp) / "model.onnx", output_names=output_names,
            opset=opset, overwrite=True, source=source,
        )  # fmt: skip
        report = check_parity(
            model=model, onnx_path=onnx_path, inputs=inputs, batch_sizes=batch_sizes, atol=atol, rtol=rtol,
            sample=sample,
        )  # fmt: skip
        spec = _config_from_graph(
            onnx_path, model_name=model_name, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us,
            instance_count=instance_count, instance_kind=instance_kind,
        )  # fmt: skip
        settings = _export_settings(spec, inputs, opset, sampled=sample is not None)
        manifest = {"source": source, "export": settings, "parity": report.to_dict()}
        version_dir = add_version(
            repository=repository,
            config=build_model_config(spec),
            model_file=onnx_path,
            manifest=manifest,
            version=version,
            overwrite=overwrite,
        )
    written = read_manifest(version_dir)
    return ExportedVersion(
        model_dir=version_dir.parent,
        version=int(version_dir.name),
        onnx_path=version_dir / "model.onnx",
        parity=report,
        manifest=written,
    )
