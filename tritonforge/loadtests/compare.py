"""Every variant of a model side by side in one run on the embedded Triton: size, gate metric, speed, speed-up.

    report = compare_variants(repository=Path("model_repository"), model="digits", samples={"image": images})
    print(format_compare(report))

The variants are the model's FP32 reference (its newest version that is not a quantized variant) and everything
`tritonforge quantize` wrote from it: models of their own (`digits_int8`) and new versions of the model itself. All of
them are served at once from a temporary repository that links each one in as its own model, so versions that the
model's version policy would hide are measured too and the canonical repository is never touched. Measurements are
closed-loop rounds that alternate between the variants; each figure is the median over the rounds, so noise on this
shared machine hits every variant alike.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from tritonforge.converters.repository import CONFIG_NAME, model_filename, read_manifest, version_numbers
from tritonforge.converters.triton_config import read_config, write_config
from tritonforge.errors import ConfigError
from tritonforge.loadtests.closed_loop import LoopFigures, median_figures, request_batches, run_closed_loop
from tritonforge.serving.derived_repository import model_dirs
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One model version taking part in a comparison.

    Attributes:
        model: the model's name in the repository.
        version: its version number.
        label: what it is ("fp32" for the reference, else the quantization label, e.g. "int8-dynamic-pc").
        size_bytes: the model file's size.
        gate: the quality gate's figures from its manifest (None for the reference).
        reference: whether this is the FP32 model the others are compared with.
    """

    model: str
    version: int
    label: str
    size_bytes: int
    gate: dict[str, Any] | None
    reference: bool

    @property
    def served_name(self) -> str:
        """The name it is served under in the comparison's temporary repository."""
        return f"{self.model}_v{self.version}"


@dataclass(frozen=True, kw_only=True)
class CompareRow:
    """One variant's measured figures.

    Attributes:
        variant: what was measured.
        figures: batch size -> median figures over the rounds.
        speedup: batch size -> items/s over the reference's items/s at that batch size.
    """

    variant: Variant
    figures: dict[int, LoopFigures]
    speedup: dict[int, float]


@dataclass(frozen=True, kw_only=True)
class CompareReport:
    """The comparison of every variant of one model.

    Attributes:
        model: the reference model's name.
        batch_sizes: the request batch sizes measured.
        concurrency: client threads per measurement.
        seconds: length of each measurement.
        rounds: measurements per variant and batch size (figures are medians).
        rows: one row per variant, the reference first.
    """

    model: str
    batch_sizes: tuple[int, ...]
    concurrency: int
    seconds: float
    rounds: int
    rows: list[CompareRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "model": self.model,
            "batch_sizes": list(self.batch_sizes),
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "rounds": self.rounds,
            "rows": [
                {
                    "model": row.variant.model,
                    "version": row.variant.version,
                    "label": row.variant.label,
                    "size_bytes": row.variant.size_bytes,
                    "gate": row.variant.gate,
                    "figures": {str(b): f.to_dict() for b, f in row.figures.items()},
                    "speedup": {str(b): s for b, s in row.speedup.items()},
                }
                for row in self.rows
            ],
        }


def _manifest(version_dir: Path) -> dict[str, Any]:
    """The version's manifest, or {} for a version written by other tools (it then counts as FP32)."""
    try:
        return read_manifest(version_dir)
    except ConfigError:
        return {}


def _variant_record(manifest: Mapping[str, Any]) -> tuple[str, str, dict[str, Any] | None] | None:
    """Return (source model, label, gate result) of a version `tritonforge quantize` wrote, or None for others."""
    source = manifest.get("quantized_from")
    if not isinstance(source, Mapping) or not source.get("model"):
        return None
    settings = manifest.get("quantization")
    label = str(settings.get("label", "quantized")) if isinstance(settings, Mapping) else "quantized"
    gate = manifest.get("gate")
    result = gate.get("result") if isinstance(gate, Mapping) else None
    return str(source["model"]), label, dict(result) if isinstance(result, Mapping) else None


def find_variants(repository: Path, model: str) -> list[Variant]:
    """Return the model's FP32 reference and every quantized variant made from it, the reference first.

    Raises:
        ConfigError: the model is not in the repository or has no non-quantized version to compare with.
    """
    found: list[Variant] = []
    reference: Variant | None = None
    for model_dir in model_dirs(repository):
        config = read_config(model_dir / CONFIG_NAME)
        filename = model_filename(config)
        if filename is None:
            continue  # an ensemble or an unknown backend: nothing to measure on its own
        for version in version_numbers(model_dir):
            version_dir = model_dir / str(version)
            if not (version_dir / filename).is_file():
                continue
            record = _variant_record(_manifest(version_dir))
            size = (version_dir / filename).stat().st_size
            if record is not None and record[0] == model:
                _, label, gate = record
                found.append(
                    Variant(
                        model=model_dir.name, version=version, label=label, size_bytes=size, gate=gate, reference=False
                    )
                )
            elif record is None and model_dir.name == model:
                reference = Variant(
                    model=model, version=version, label="fp32", size_bytes=size, gate=None, reference=True
                )  # the newest such version wins: versions are visited in ascending order
    if reference is None:
        raise ConfigError(
            f"model '{model}' has no FP32 version in {repository} to compare with; export it with `tritonforge export`"
        )
    return [reference, *found]


def _comparison_repository(repository: Path, variants: Sequence[Variant], work_dir: Path) -> Path:
    """Link each variant in as a model of its own with one version, so that every one of them is served."""
    target = work_dir / "repository"
    target.mkdir(parents=True)
    for variant in variants:
        config = read_config(repository / variant.model / CONFIG_NAME)
        config.name = variant.served_name
        config.ClearField("version_policy")
        model_dir = target / variant.served_name
        model_dir.mkdir()
        (model_dir / "1").symlink_to((repository / variant.model / str(variant.version)).resolve())
        write_config(config, model_dir / CONFIG_NAME)
    return target


def compare_variants(
    *,
    repository: Path,
    model: str,
    samples: Mapping[str, npt.NDArray[Any]],
    batch_sizes: Sequence[int] = (1, 8),
    concurrency: int = 4,
    seconds: float = 3.0,
    rounds: int = 3,
) -> CompareReport:
    """Serve every variant of `model` on the embedded Triton and measure each one at each batch size.

    Args:
        repository: the model repository.
        model: the FP32 model whose variants to compare.
        samples: whole input arrays for requests (leading axis = items), e.g. the evaluation inputs.
        batch_sizes: rows per request; each is measured separately.
        concurrency: client threads.
        seconds: length of one measurement.
        rounds: measurements per variant and batch size, alternating between variants; figures are medians.

    Returns:
        The report, the reference first.

    Raises:
        ConfigError: bad arguments, or no FP32 reference.
        ServerError: the server or a model failed to start.
    """
    if rounds < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError("rounds must be >= 1 and batch sizes >= 1")
    variants = find_variants(repository, model)
    _LOGGER.info("comparing %s", ", ".join(f"{v.model} v{v.version} ({v.label})" for v in variants))
    requests = {batch_size: request_batches(samples, batch_size) for batch_size in batch_sizes}
    measured: dict[tuple[str, int], list[LoopFigures]] = {}
    with tempfile.TemporaryDirectory(prefix="tritonforge-compare-") as tmp:
        served = _comparison_repository(repository, variants, Path(tmp))
        with EmbeddedTriton(ServerOptions(repository=served)) as server:
            for round_index in range(rounds):
                for batch_size in batch_sizes:
                    for variant in variants:
                        figures = run_closed_loop(
                            url=server.grpc_url, model=variant.served_name, requests=requests[batch_size],
                            concurrency=concurrency, seconds=seconds,
                        )  # fmt: skip
                        measured.setdefault((variant.served_name, batch_size), []).append(figures)
                        _LOGGER.info(
                            "round %d/%d, batch %d, %s: %.0f items/s, p99 %.2f ms",
                            round_index + 1, rounds, batch_size, variant.served_name,
                            figures.items_per_s, figures.p99_ms,
                        )  # fmt: skip
    medians = {key: median_figures(runs) for key, runs in measured.items()}
    reference = variants[0]
    rows = [
        CompareRow(
            variant=variant,
            figures={b: medians[(variant.served_name, b)] for b in batch_sizes},
            speedup={
                b: medians[(variant.served_name, b)].items_per_s
                / max(medians[(reference.served_name, b)].items_per_s, 1e-9)
                for b in batch_sizes
            },
        )
        for variant in variants
    ]
    return CompareReport(
        model=model, batch_sizes=tuple(batch_sizes), concurrency=concurrency, seconds=seconds, rounds=rounds,
        rows=rows,
    )  # fmt: skip


def gate_summary(gate: Mapping[str, Any] | None) -> str:
    """Return the gate's deciding figure in a few words ("acc 98.44% (drop 0.22 pt)", "cos 0.9932 / min 0.9858")."""
    if not gate:
        return "reference"
    metric = gate.get("metric")
    if metric == "accuracy":
        return f"acc {100 * float(gate['candidate_accuracy']):.2f}% (drop {float(gate['drop_points']):.2f} pt)"
    if metric == "cosine":
        return f"cos {float(gate['cosine_mean']):.4f} / min {float(gate['cosine_min']):.4f}"
    if metric == "max-abs":
        return f"max abs {float(gate['max_abs_error']):.2e}"
    return "?"


def format_compare(report: CompareReport, *, markdown: bool = False) -> str:
    """Render the report as an aligned text table, or as a Markdown table for the README."""
    header = ["variant", "size MB", "gate"]
    for b in report.batch_sizes:
        header += [f"b{b} items/s", f"b{b} p50 ms", f"b{b} p99 ms", f"b{b} speed-up"]
    lines = [header]
    for row in report.rows:
        cells = [
            f"{row.variant.model} v{row.variant.version} ({row.variant.label})",
            f"{row.variant.size_bytes / 1e6:.2f}",
            gate_summary(row.variant.gate),
        ]
        for b in report.batch_sizes:
            fig = row.figures[b]
            cells += [f"{fig.items_per_s:.0f}", f"{fig.p50_ms:.2f}", f"{fig.p99_ms:.2f}", f"{row.speedup[b]:.2f}x"]
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
        out += ["| " + " | ".join(cells) + " |" for cells in lines[1:]]
        return "\n".join(out)
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip() for cells in lines
    )
