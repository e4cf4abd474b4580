"""`tritonforge repo check`: what Triton would trip over in a model repository, one line per problem.

    findings = check_repository(Path("model_repository"))
    for finding in findings:
        print(finding)   # "model_repository/digits/2/model.onnx: input 'image': config dims [1, 8, 9] ..."
    print(findings.model_count, findings.version_count)

Checked: every config.pbtxt parses and names its folder; batching settings are coherent; each version folder holds
the model file; for ONNX models, inputs and outputs match the graph in names, dtypes and dims, and max_batch_size > 0
comes with a dynamic first axis in the graph. Other platforms get the file checks only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tritonforge.converters.onnx_graph import GraphTensor, OnnxSignature, read_onnx_signature
from tritonforge.converters.repository import CONFIG_NAME, model_filename, version_numbers
from tritonforge.converters.specs import DYNAMIC_DIM, numpy_to_triton
from tritonforge.converters.triton_config import read_config
from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

_LOGGER = logging.getLogger(__name__)

_ONNX_RUNTIMES = {"onnxruntime_onnx", "onnxruntime"}


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One problem in the repository.

    Attributes:
        model: the model folder's name.
        version: the version concerned, or None for the model as a whole.
        path: the file or folder at fault.
        message: what is wrong and, where it helps, how to fix it.
    """

    model: str
    version: int | None
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class RepositoryFindings(list[Finding]):
    """The findings of one check (a plain list), plus how many models and versions were looked at."""

    def __init__(self, findings: list[Finding], *, model_count: int, version_count: int) -> None:
        super().__init__(findings)
        self.model_count = model_count
        self.version_count = version_count


def _batching_problems(config: model_config_pb2.ModelConfig) -> list[str]:
    problems = []
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size {config.max_batch_size} must be >= 0 (0: the model has no batch axis)")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append("dynamic_batching needs max_batch_size >= 1; remove it or raise max_batch_size")
        too_big = [s for s in config.dynamic_batching.preferred_batch_size if s > config.max_batch_size]
        if too_big and config.max_batch_size > 0:
            problems.append(f"preferred_batch_size {too_big[0]} exceeds max_batch_size {config.max_batch_size}")
    return problems


def _dims_text(dims: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _tensor_problems(
    role: str, entry: model_config_pb2.ModelInput | model_config_pb2.ModelOutput, graph: GraphTensor, max_batch: int
) -> list[str]:
    from tritonclient.grpc import model_config_pb2

    problems = []
    config_type = model_config_pb2.DataType.Name(entry.data_type)
    graph_type = numpy_to_triton(graph.dtype) if graph.dtype else f"ONNX type {graph.elem_type}"
    if config_type != graph_type:
        problems.append(f"{role} '{entry.name}': config data_type {config_type} but the graph has {graph_type}")
    if graph.dims is None:
        return problems
    model_dims = graph.dims
    if max_batch > 0:
        if not graph.dims or graph.dims[0] != DYNAMIC_DIM:
            first = graph.dims[0] if graph.dims else "none"
            return [
                *problems,
                f"{role} '{entry.name}': max_batch_size {max_batch} needs a dynamic first axis in the graph, which "
                f"has batch size {first} (shape {_dims_text(graph.dims)}); re-export with a dynamic batch axis or set "
                "max_batch_size 0",
            ]
        model_dims = graph.dims[1:]
    config_dims = tuple(entry.reshape.shape) if entry.HasField("reshape") else tuple(entry.dims)
    fits = len(config_dims) == len(model_dims) and all(
        g == DYNAMIC_DIM or c == g for c, g in zip(config_dims, model_dims, strict=True)
    )
    if not fits:
        where = " (batch axis removed)" if max_batch > 0 else ""
        problems.append(
            f"{role} '{entry.name}': config dims {_dims_text(config_dims)} do not match the graph's "
            f"{_dims_text(model_dims)}{where}"
        )
    return problems


def graph_problems(config: model_config_pb2.ModelConfig, signature: OnnxSignature) -> list[str]:
    """Compare a config's inputs and outputs with an ONNX graph's; return one message per mismatch.

    Args:
        config: the parsed config.pbtxt.
        signature: the graph's inputs and outputs.

    Returns:
        Messages, empty when the config describes the graph.
    """
    problems = []
    graph_inputs = {t.name: t for t in signature.inputs}
    graph_outputs = {t.name: t for t in signature.outputs}
    for role, entries, graph in (("input", config.input, graph_inputs), ("output", config.output, graph_outputs)):
        for entry in entries:
            if entry.name not in graph:
                problems.append(f"{role} '{entry.name}' is not in the ONNX graph (graph {role}s: {', '.join(graph)})")
            else:
                problems.extend(_tensor_problems(role, entry, graph[entry.name], config.max_batch_size))
    configured = {entry.name for entry in config.input}
    problems.extend(
        f"graph input '{name}' is missing from config.pbtxt; add it (Triton must feed every input)"
        for name in graph_inputs
        if name not in configured
    )
    return problems


def _check_engine_files(model_dir: Path, version: int, config: model_config_pb2.ModelConfig) -> list[Finding]:
    """A TensorRT model built per GPU type lists one engine per compute capability; each version needs all of them."""
    findings = []
    for capability, filename in sorted(config.cc_model_filenames.items()):
        engine = model_dir / str(version) / filename
        if not engine.exists():
            findings.append(
                Finding(
                    model=model_dir.name, version=version, path=engine,
                    message=f"no engine for compute capability {capability}; run `tritonforge gpu build-engine` "
                    "on a GPU of that type",
                )
            )  # fmt: skip
    return findings


def _check_version(model_dir: Path, version: int, config: model_config_pb2.ModelConfig) -> list[Finding]:
    filename = model_filename(config)
    if filename is None:
        return []
    if config.cc_model_filenames:  # the build step sets default_model_filename too; every listed engine must exist
        return _check_engine_files(model_dir, version, config)
    model_file = model_dir / str(version) / filename
    if not model_file.exists():
        return [
            Finding(model=model_dir.name, version=version, path=model_file, message="model file is missing; re-export")
        ]
    if (config.platform or config.backend) not in _ONNX_RUNTIMES:
        return []  # no graph reader for this format: the file's existence is all we check
    try:
        signature = read_onnx_signature(model_file)
    except ConfigError as exc:
        return [Finding(model=model_dir.name, version=version, path=model_file, message=str(exc))]
    return [
        Finding(model=model_dir.name, version=version, path=model_file, message=message)
        for message in graph_problems(config, signature)
    ]


def _check_model(model_dir: Path) -> tuple[list[Finding], int]:
    name = model_dir.name
    config_path = model_dir / CONFIG_NAME

    def finding(message: str, path: Path = config_path) -> Finding:
        return Finding(model=name, version=None, path=path, message=message)

    if not config_path.is_file():
        return [finding("no config.pbtxt; generate one with `tritonforge export`", model_dir)], 0
    try:
        config = read_config(config_path)
    except ConfigError as exc:
        return [finding(str(exc).removeprefix(str(config_path)).lstrip(":"))], 0
    findings = [finding(message) for message in _batching_problems(config)]
    if config.name != name:
        findings.append(
            finding(f"config name '{config.name}' differs from its folder '{name}'; Triton needs them equal")
        )
    if model_filename(config) is None and config.platform != "ensemble":
        findings.append(finding(f"unknown platform/backend {config.platform or config.backend!r}; files not checked"))
    findings.extend(
        finding("leftover staging folder from an interrupted export; delete it", p)
        for p in sorted(model_dir.glob(".staging-*"))
    )
    versions = version_numbers(model_dir)
    if not versions:
        findings.append(finding("no version folders (e.g. 1/); export a version", model_dir))
    if config.version_policy.WhichOneof("policy_choice") == "specific":
        missing = sorted(set(config.version_policy.specific.versions) - set(versions))
        if missing:
            findings.append(finding(f"version_policy lists version(s) {missing} that have no folder"))
    for version in versions:
        findings.extend(_check_version(model_dir, version, config))
    siblings = {p.name for p in model_dir.parent.iterdir() if (p / CONFIG_NAME).is_file()}
    findings.extend(
        finding(f"ensemble step calls model '{step.model_name}', which is not in this repository")
        for step in config.ensemble_scheduling.step
        if step.model_name not in siblings
    )
    return findings, len(versions)


def check_repository(repository: Path) -> RepositoryFindings:
    """Check every model in a Triton model repository.

    Args:
        repository: the repository root (one folder per model).

    Returns:
        The findings, empty when the repository is clean; also counts the models and versions seen.

    Raises:
        ConfigError: `repository` is not a folder.
    """
    if not repository.is_dir():
        raise ConfigError(f"model repository {repository} does not exist; create one with `tritonforge export`")
    findings: list[Finding] = []
    model_dirs = sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))
    version_count = 0
    for model_dir in model_dirs:
        model_findings, versions = _check_model(model_dir)
        findings.extend(model_findings)
        version_count += versions
    _LOGGER.debug(
        "checked %d models, %d versions in %s: %d findings", len(model_dirs), version_count, repository, len(findings)
    )
    return RepositoryFindings(findings, model_count=len(model_dirs), version_count=version_count)
