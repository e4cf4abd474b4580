"""PyTorch model -> a new, gated version in a Triton model repository: the one call the CLI and the examples use.

    model = load_factory("tritonforge.examples.digits:build_model", weights=Path("build/digits_cnn.pt"))
    exported = export_to_repository(model=model, inputs=[TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")],
                                    output_names=["logits"], repository=Path("model_repository"),
                                    model_name="digits", source="tritonforge.examples.digits:build_model")
    print(exported.model_dir / str(exported.version))

Order matters: export to a temporary folder, run the parity gate, compare the new signature with the model's
config.pbtxt, and only then touch the repository, so a failed export, gate or signature check leaves the repository
exactly as it was. config.pbtxt's inputs and outputs come from the exported graph (batch axis removed, dynamic sizes
as -1), so the config always describes the file that was written.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonforge.converters.onnx_graph import GraphTensor, OnnxSignature, batched_specs, read_onnx_signature
from tritonforge.converters.parity import ParityReport, SampleFn, check_parity, gate_axes, sampled_feeds
from tritonforge.converters.repository import add_version, read_manifest, resolve_version, version_numbers
from tritonforge.converters.signature_change import signature_change
from tritonforge.converters.specs import DYNAMIC_DIM, TensorSpec
from tritonforge.converters.torch2onnx import EXAMPLE_BATCH_SIZE, MIN_OPSET, export_torch_to_onnx
from tritonforge.converters.triton_config import (
    InstanceKind,
    ModelConfigSpec,
    build_model_config,
    validate_model_name,
)
from tritonforge.errors import ConfigError
from tritonforge.signature import ModelSignature, SignatureTensor

if TYPE_CHECKING:
    import torch

_LOGGER = logging.getLogger(__name__)

PARITY_LARGE_BATCH = 8
_FACTORY_SPEC = re.compile(r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*)$")
_SOURCE_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass(frozen=True, kw_only=True)
class ExportedVersion:
    """A version that passed the gate and is in the repository.

    Attributes:
        model_dir: `<repository>/<model>`.
        version: the version number written.
        onnx_path: the model file inside the version folder.
        parity: the parity gate's figures.
        manifest: the content of the version's manifest.json.
        signature: what clients see: names, dtypes, dims with symbolic names ("seq"), max batch size.
    """

    model_dir: Path
    version: int
    onnx_path: Path
    parity: ParityReport
    manifest: dict[str, Any]
    signature: ModelSignature | None = None


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


def _input_dict(spec: TensorSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype}
    if spec.axis_names:
        entry["axis_names"] = list(spec.dim_axes())
    if spec.value_range:
        entry["value_range"] = list(spec.value_range)
    return entry


def _export_settings(
    spec: ModelConfigSpec, inputs: Sequence[TensorSpec], opset: int, *, sampled: bool, new_signature: bool
) -> dict[str, Any]:
    return {
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "opset": opset,
        "parity_inputs": "caller's sample()" if sampled else "random (specs.sample_inputs)",
        "new_signature": new_signature,
        "inputs": [_input_dict(s) for s in inputs],
        "outputs": [o.name for o in spec.outputs],
        "max_batch_size": spec.max_batch_size,
        "max_queue_delay_us": spec.max_queue_delay_us,
        "instance_count": spec.instance_count,
        "instance_kind": spec.instance_kind.value,
    }


def _signature_tensor(tensor: GraphTensor, spec: TensorSpec) -> SignatureTensor:
    names = list((tensor.dim_names or ())[1:])  # the batch axis removed, as in the spec
    names += [None] * (len(spec.shape) - len(names))
    dims = tuple(name if size == DYNAMIC_DIM and name else size for size, name in zip(spec.shape, names, strict=False))
    return SignatureTensor(name=spec.name, dtype=spec.dtype, dims=dims)


def graph_signature(graph: OnnxSignature, spec: ModelConfigSpec, *, version: int | None = None) -> ModelSignature:
    """The signature clients of an exported model see, with the graph's symbolic dim names ("seq") kept."""
    return ModelSignature(
        name=spec.name,
        version=None if version is None else str(version),
        platform="onnxruntime_onnx",
        max_batch_size=spec.max_batch_size,
        inputs=tuple(_signature_tensor(t, s) for t, s in zip(graph.inputs, spec.inputs, strict=True)),
        outputs=tuple(_signature_tensor(t, s) for t, s in zip(graph.outputs, spec.outputs, strict=True)),
    )


def _factory(source: str) -> str | None:
    match = _SOURCE_FACTORY.match(source or "")
    return match.group(0) if match else None


def default_model_name(repository: Path, model_spec: str) -> str:
    """The model name `tritonforge export` uses without --name: the factory module's last part ("digits").

    Two factories in one module would get the same name, and the second export would silently become a new version
    (and signature) of the first model; so a name already taken by another factory is refused.

    Args:
        repository: the model repository root.
        model_spec: the "package.module:factory" being exported.

    Returns:
        The name, free or already holding versions of this same factory.

    Raises:
        ConfigError: the model folder exists and its latest version was exported from another factory (or records
            none); the message says to pass --name.
    """
    name = model_spec.split(":", 1)[0].rsplit(".", 1)[-1]
    model_dir = repository / name
    if not model_dir.exists():
        return name
    versions = version_numbers(model_dir)
    other: str | None = None
    if versions:
        try:
            other = _factory(str(read_manifest(model_dir / str(versions[-1])).get("source", "")))
        except ConfigError:
            other = None
    if other == _factory(model_spec):
        return name
    made = f"was exported from {other}" if other else "was not exported by tritonforge from a factory"
    raise ConfigError(
        f"model '{name}' in {repository} {made}, not {model_spec}: pass --name to choose the model's name "
        f"(e.g. --name {model_spec.rsplit(':', 1)[-1]})"
    )


def _trace_example(inputs: Sequence[TensorSpec], sample: SampleFn | None) -> Mapping[str, Any] | None:
    return sampled_feeds(sample, inputs, EXAMPLE_BATCH_SIZE) if sample is not None else None


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
    axis_sizes: Mapping[str, Sequence[int]] | None = None,
    new_signature: bool = False,
) -> ExportedVersion:
    """Export a model to ONNX, gate it on parity with torch, and add it to the repository as a new version.

    Args:
        model: the module to export.
        inputs: its inputs, each named after a forward() parameter (bound by name, in any order), shapes without
            the batch axis; dynamic dims are -1 or a named axis shared between inputs (TensorSpec.axis_names).
        repository: the model repository root.
        model_name: the model's name in Triton (its folder).
        source: where the model came from, recorded in the manifest (e.g. "pkg.module:factory").
        output_names: names for the outputs; default: the model's own (dict keys, named-tuple or ModelOutput
            fields), else output_0, output_1, ...
        max_batch_size: largest batch Triton may form.
        max_queue_delay_us: dynamic batching's queue delay.
        instance_count: model instances per device.
        instance_kind: where instances run; AUTO means GPU when the server has one.
        opset: ONNX opset (17 to 20).
        atol: parity gate absolute tolerance.
        rtol: parity gate relative tolerance.
        version: the version to write; default: the next integer.
        overwrite: allow replacing an existing `version`.
        sample: real inputs as a function of the batch size (e.g. tokenized sentences for a text model, whose
            attention mask random integers would break): traced on and compared by the gate, which also generates
            the other axis sizes with the value ranges the sample shows. None: generated inputs only.
        axis_sizes: sizes the gate tries per dynamic axis, e.g. {"seq": (1, 16, 64)}; the middle one is traced.
            Default: 1, a typical size that is no static dim of the model, and a large one (>= 32).
        new_signature: allow a version whose inputs, outputs or max_batch_size differ from the model's
            config.pbtxt (clients of the model must change); the old and new signature go in the manifest.

    Returns:
        What was written, with the gate's figures and the signature.

    Raises:
        ConfigError: bad arguments, an input forward() does not take, the version exists and overwrite is False,
            or the signature would change without `new_signature`.
        ConversionError: the export failed.
        ParityError: ONNX Runtime disagrees with torch at some batch or axis size; nothing is written.
    """
    _validate(model_name, max_batch_size, max_queue_delay_us, instance_count)
    model_dir = repository / model_name
    resolve_version(model_dir, version, overwrite=overwrite)  # fail before the export's work
    batch_sizes = sorted({1, min(PARITY_LARGE_BATCH, max_batch_size)})
    plan = gate_axes(inputs, axis_sizes, sample)
    with tempfile.TemporaryDirectory(prefix="tritonforge-export-") as tmp:
        onnx_path = export_torch_to_onnx(
            model=model, inputs=inputs, output_path=Path(tmp) / "model.onnx", output_names=output_names,
            opset=opset, overwrite=True, source=source, example=_trace_example(inputs, sample),
            trace_sizes={axis: typical for axis, (_, typical) in plan.items()},
        )  # fmt: skip
        report = check_parity(
            model=model, onnx_path=onnx_path, inputs=inputs, batch_sizes=batch_sizes, atol=atol, rtol=rtol,
            sample=sample, axis_sizes={axis: sizes for axis, (sizes, _) in plan.items()},
        )  # fmt: skip
        spec = _config_from_graph(
            onnx_path, model_name=model_name, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us,
            instance_count=instance_count, instance_kind=instance_kind,
        )  # fmt: skip
        config = build_model_config(spec)
        change = signature_change(model_dir, config, new_signature=new_signature)  # before the repository is touched
        signature = graph_signature(read_onnx_signature(onnx_path), spec)
        settings = _export_settings(spec, inputs, opset, sampled=sample is not None, new_signature=new_signature)
        manifest: dict[str, Any] = {
            "source": source, "export": settings, "parity": report.to_dict(), "signature": signature.to_dict(),
        }  # fmt: skip
        if change is not None:
            manifest["signature_change"] = change
        version_dir = add_version(
            repository=repository,
            config=config,
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
        signature=dataclasses.replace(signature, version=version_dir.name),
    )
