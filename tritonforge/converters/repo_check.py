"""`tritonforge repo check`: what Triton would trip over in a model repository, one line per problem.

    findings = check_repository(Path("model_repository"))
    for finding in findings:
        print(finding)   # "model_repository/digits/2/model.onnx: input 'image': config dims [1, 8, 9] ..."
    print(findings.model_count, findings.version_count)

Checked, as Triton checks when it loads a model (its model_config_utils.cc) and as far as can be seen offline:
every config.pbtxt parses and, where it gives a name, names its folder; inputs and outputs have a unique name, a
data_type and dims of sizes >= 1 or -1, and a reshape holding as many elements as the dims; batching settings are
coherent; version folders are integers (Triton ignores any other folder); each version holds the model file and every
label file named exists; ensembles call models that exist, with their inputs and outputs, and every tensor they read
is an ensemble input or a step's output. For ONNX models, inputs and outputs match the graph in names, dtypes and
dims, and max_batch_size > 0 comes with a dynamic first axis in the graph. Other platforms get the file checks only.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
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
        not_positive = [s for s in config.dynamic_batching.preferred_batch_size if s <= 0]
        if not_positive:
            problems.append(f"preferred_batch_size {not_positive[0]} must be >= 1")
        too_big = [s for s in config.dynamic_batching.preferred_batch_size if s > config.max_batch_size]
        if too_big and config.max_batch_size > 0:
            problems.append(f"preferred_batch_size {too_big[0]} exceeds max_batch_size {config.max_batch_size}")
    return problems


def _dims_text(dims: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _element_count(dims: Sequence[int]) -> int:
    """Triton's GetElementCount: -1 when any dim is variable, 0 for no dims at all."""
    if DYNAMIC_DIM in dims:
        return DYNAMIC_DIM
    return math.prod(dims) if dims else 0


def _trunks(dims: Sequence[int]) -> list[int]:
    """Element counts of the runs of fixed dims between variable ones ([2, 4, -1, 6] -> [8, 6])."""
    counts, current = [], 1
    for dim in dims:
        if dim == DYNAMIC_DIM:
            counts.append(current)
            current = 1
        else:
            current *= dim
    return [*counts, current]


def _reshape_problem(label: str, dims: Sequence[int], shape: Sequence[int], max_batch: int) -> str | None:
    if not shape and max_batch == 0:
        return f"{label}: an empty reshape needs max_batch_size >= 1 (a model without batching cannot take scalars)"
    bad = [d for d in shape if d < 1 and d != DYNAMIC_DIM]
    if bad:
        return f"{label}: reshape dim {bad[0]} in {_dims_text(shape)} is not allowed; use a size >= 1, or -1 for any"
    dims_count, shape_count = _element_count(dims), _element_count(shape)
    fits = dims_count == shape_count or (shape_count == 0 and dims_count == 1)
    if fits and dims_count == DYNAMIC_DIM:
        fits = _trunks(dims) == _trunks(shape)
    if not fits:
        return (
            f"{label}: reshape {_dims_text(shape)} does not hold the same elements as dims {_dims_text(dims)}; "
            "make the sizes between -1s multiply to the same numbers"
        )
    return None


def _entry_problems(
    label: str, entry: model_config_pb2.ModelInput | model_config_pb2.ModelOutput, max_batch: int
) -> list[str]:
    """What Triton's ValidateIOShape refuses in one input or output."""
    problems = []
    if entry.data_type == 0:  # TYPE_INVALID: the field was left out
        problems.append(f"{label} has no data_type; set one, e.g. TYPE_FP32")
    dims = list(entry.dims)
    if not dims:
        hint = " (for one value per item: dims [ 1 ] with reshape { shape: [ ] })" if max_batch > 0 else ""
        return [*problems, f"{label} has no dims; give its shape without the batch axis{hint}"]
    bad = [d for d in dims if d < 1 and d != DYNAMIC_DIM]
    if bad:
        problems.append(f"{label}: dim {bad[0]} in {_dims_text(dims)} is not allowed; use a size >= 1, or -1 for any")
    elif entry.HasField("reshape"):
        problem = _reshape_problem(label, dims, list(entry.reshape.shape), max_batch)
        problems.extend([problem] if problem else [])
    return problems


def _io_problems(config: model_config_pb2.ModelConfig) -> list[str]:
    """Unnamed, duplicated, untyped or badly shaped inputs and outputs: Triton refuses to load any of them."""
    problems = []
    for role, entries in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            label = f"{role} '{entry.name}'" if entry.name else f"{role} #{index + 1}"
            if not entry.name:
                problems.append(f"{label} has no name; every {role} needs one")
            elif entry.name in seen:
                problems.append(f"{role} name '{entry.name}' appears more than once; {role} names must be unique")
            seen.add(entry.name)
            problems.extend(_entry_problems(label, entry, config.max_batch_size))
    return problems


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
        hint = ""
        if max_batch > 0 and len(config_dims) == len(graph.dims) and config_dims[1:] == tuple(model_dims):
            hint = f"; with max_batch_size {max_batch} the dims leave the batch axis out: {_dims_text(model_dims)}"
        problems.append(
            f"{role} '{entry.name}': config dims {_dims_text(config_dims)} do not match the graph's "
            f"{_dims_text(model_dims)}{where}{hint}"
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
        message = "model file is missing; re-export"
        others = sorted(p.name for p in model_file.parent.glob(f"*{Path(filename).suffix}"))
        if others:
            message = (
                f"model file is missing; Triton loads {filename} from each version folder, this one has "
                f"{', '.join(others[:3])}: rename it, or set default_model_filename"
            )
        return [Finding(model=model_dir.name, version=version, path=model_file, message=message)]
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


def _model_io(config_path: Path) -> tuple[set[str], set[str]] | None:
    """A sibling model's input and output names, or None when its config cannot be read (reported for it)."""
    try:
        config = read_config(config_path)
    except ConfigError:
        return None
    return {i.name for i in config.input}, {o.name for o in config.output}


def _step_problems(index: int, step: model_config_pb2.ModelEnsembling.Step, repository: Path) -> list[str]:
    where = f"ensemble step {index + 1} (model '{step.model_name}')"
    if not step.model_name:
        return [f"ensemble step {index + 1} has no model_name"]
    problems = [f"{where} has no {field}" for field in ("input_map", "output_map") if not getattr(step, field)]
    config_path = repository / step.model_name / CONFIG_NAME
    if not config_path.is_file():
        return [*problems, f"ensemble step calls model '{step.model_name}', which is not in this repository"]
    io = _model_io(config_path)
    if io is None:
        return problems
    for field, names, role in (("input_map", io[0], "input"), ("output_map", io[1], "output")):
        problems.extend(
            f"{where}: {field} names {role} '{key}', which the model does not have "
            f"({role}s: {', '.join(sorted(names))})"
            for key in getattr(step, field)
            if key not in names
        )
    return problems


def _flow_problems(config: model_config_pb2.ModelConfig) -> list[str]:
    """Triton's ensemble data-flow check: every tensor read is provided, every output written, nothing left unused."""
    steps = config.ensemble_scheduling.step
    inputs = {i.name for i in config.input}
    outputs = {o.name for o in config.output}
    read = {tensor for step in steps for tensor in step.input_map.values()}
    written: list[str] = [tensor for step in steps for tensor in step.output_map.values()]
    problems = [f"ensemble tensor '{t}' is written by more than one step" for t in sorted(_repeated(written))]
    problems.extend(
        f"ensemble step(s) read tensor '{t}', which is neither an ensemble input nor any step's output"
        for t in sorted(read - inputs - set(written))
    )
    problems.extend(f"ensemble output '{t}' is written by no step" for t in sorted(outputs - set(written)))
    problems.extend(
        f"ensemble input '{t}' is read by no step; Triton refuses unused inputs" for t in sorted(inputs - read)
    )
    problems.extend(
        f"ensemble tensor '{t}' is written but neither read by a step nor an ensemble output; Triton refuses "
        "unused tensors: drop it from output_map"
        for t in sorted(set(written) - read - outputs)
    )
    return problems


def _repeated(items: Iterable[str]) -> set[str]:
    return {item for item, count in Counter(items).items() if count > 1}


def _ensemble_problems(config: model_config_pb2.ModelConfig, repository: Path) -> list[str]:
    """What Triton refuses in an ensemble (ValidateEnsembleSchedulingConfig), with the step models' own configs."""
    if not config.HasField("ensemble_scheduling"):
        if config.platform == "ensemble":
            return ["platform 'ensemble' needs ensemble_scheduling { step { ... } }"]
        return []
    if config.platform != "ensemble":
        return [f'ensemble_scheduling is set but platform is {config.platform!r}; set platform: "ensemble"']
    steps = config.ensemble_scheduling.step
    if not steps:
        return ["ensemble_scheduling has no step; add one per model it calls"]
    problems = (
        ["an ensemble takes no instance_group (its steps' models have their own)"] if config.instance_group else []
    )
    for index, step in enumerate(steps):
        problems.extend(_step_problems(index, step, repository))
    return problems + _flow_problems(config)


def _folder_problems(model_dir: Path, config: model_config_pb2.ModelConfig, versions: list[int]) -> list[Finding]:
    """Folders Triton ignores or misses: staging leftovers, non-integer versions, missing versions and label files."""

    def finding(message: str, path: Path) -> Finding:
        return Finding(model=model_dir.name, version=None, path=path, message=message)

    folders = sorted(p for p in model_dir.iterdir() if p.is_dir())
    findings = [
        finding("leftover staging folder from an interrupted export; delete it", p)
        for p in folders
        if p.name.startswith(".staging-")
    ]
    for folder in folders:
        if folder.name.startswith("."):
            continue
        if not folder.name.isdigit():
            findings.append(
                finding(
                    f"folder '{folder.name}' is not a version number; Triton ignores it (name versions 1, 2, ...)",
                    folder,
                )
            )
        elif folder.name.startswith("0"):
            findings.append(
                finding(
                    f"version folder '{folder.name}' is ignored here; name versions 1, 2, ... without leading zeros",
                    folder,
                )
            )
    if not versions:
        findings.append(finding("no version folders (e.g. 1/); export a version", model_dir))
    if config.version_policy.WhichOneof("policy_choice") == "specific":
        missing = sorted(set(config.version_policy.specific.versions) - set(versions))
        if missing:
            findings.append(
                finding(f"version_policy lists version(s) {missing} that have no folder", model_dir / CONFIG_NAME)
            )
    findings.extend(
        finding(
            f"output '{o.name}' names label file '{o.label_filename}', which is missing", model_dir / o.label_filename
        )
        for o in config.output
        if o.label_filename and not (model_dir / o.label_filename).is_file()
    )
    return findings


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
    findings = [finding(message) for message in _batching_problems(config) + _io_problems(config)]
    if config.name and config.name != name:  # a config without a name takes its folder's
        findings.append(
            finding(f"config name '{config.name}' differs from its folder '{name}'; Triton needs them equal")
        )
    if model_filename(config) is None and config.platform != "ensemble":
        findings.append(finding(f"unknown platform/backend {config.platform or config.backend!r}; files not checked"))
    findings.extend(finding(message) for message in _ensemble_problems(config, model_dir.parent))
    versions = version_numbers(model_dir)
    findings.extend(_folder_problems(model_dir, config, versions))
    for version in versions:
        findings.extend(_check_version(model_dir, version, config))
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
