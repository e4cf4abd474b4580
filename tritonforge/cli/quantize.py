"""`tritonforge quantize`: INT8/FP16 variants of a repository model, each gated on a task metric against FP32.

tritonforge quantize digits --eval-set eval.npz --metric accuracy --method int8-dynamic --method int8-static
    --calibration-set calib.npz --calibrate entropy [--accuracy-aware] [--as-version | --name NAME]

Prints the FP32 baseline (accuracy, p50 latency, items/s, size), then one row per variant (gate figures, pass, FAIL
and by how much it missed, or REFUSED and why: no quantized op, or neither smaller nor faster than FP32; speed and
size against FP32, where it was written) and exits 1 when no variant was written, so a pipeline stops rather than
ship a silently worse model. `--force` writes a passing variant that is not smaller or faster, with a warning;
`--report FILE` writes the same figures as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from tritonforge.converters.quality_gate import GateMetric, QualityGateError
from tritonforge.converters.quantize import DEFAULT_PERCENTILE, CalibrationMethod, QuantMethod, QuantSettings
from tritonforge.converters.sensitivity import DEFAULT_MAX_TRIES, Granularity
from tritonforge.converters.variants import SPEED_SECONDS, SpeedPoint, VariantOutcome
from tritonforge.errors import ConfigError


def build_settings(
    methods: Sequence[QuantMethod],
    *,
    per_channel: bool = False,
    reduce_range: bool = False,
    calibrate: CalibrationMethod | None = None,
    percentile: float | None = None,
    op_types: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[QuantSettings]:
    """Turn the command's options into one QuantSettings per method; an option no method can use is an error.

    Raises:
        ConfigError: e.g. --calibrate without int8-static, or --per-channel with fp16 only.
    """
    methods = list(dict.fromkeys(methods))
    int8 = [m for m in methods if m is not QuantMethod.FP16]
    if (per_channel or reduce_range or op_types) and not int8:
        raise ConfigError("--per-channel, --reduce-range and --op-type apply to INT8 methods; add --method int8-...")
    if (calibrate is not None or percentile is not None) and QuantMethod.INT8_STATIC not in methods:
        raise ConfigError("--calibrate and --percentile apply to int8-static; add --method int8-static")
    settings = []
    for method in methods:
        static = method is QuantMethod.INT8_STATIC
        settings.append(
            QuantSettings(
                method=method,
                per_channel=per_channel and method is not QuantMethod.FP16,
                reduce_range=reduce_range and method is not QuantMethod.FP16,
                calibration=calibrate if static and calibrate is not None else CalibrationMethod.MINMAX,
                percentile=percentile if static and percentile is not None else DEFAULT_PERCENTILE,
                op_types=tuple(op_types) if op_types and method is not QuantMethod.FP16 else None,
                exclude_nodes=tuple(exclude),
            )
        )
    return settings


def _point(point: SpeedPoint, reference: SpeedPoint) -> str:
    return f"{point.p50_ms:.3f} ms {point.items_per_s:,.0f}/s {point.items_per_s / reference.items_per_s:.2f}x"


def _size(size: int, reference: int) -> str:
    if not size or not reference:
        return "-"
    shown = f"{size / 1e6:.2f} MB" if reference >= 100_000 else f"{size / 1e3:.1f} kB"
    return f"{shown} {size / reference:.2f}x"


def _baseline_gate(outcome: VariantOutcome) -> str:
    if outcome.reference_accuracy is not None:
        return f"acc {outcome.reference_accuracy:.4f}"
    return "reference"


def format_outcomes(outcomes: Sequence[VariantOutcome]) -> str:
    """Return the variants as an aligned table under the FP32 baseline (accuracy, p50 latency, items/s, size).

    Every ratio is against the FP32 row, measured side by side in the same run.
    """
    first = outcomes[0]
    reference = first.reference_speed
    batches = [p.batch_size for p in reference]
    header = ["variant", "gate", "result", *(f"batch {b}" for b in batches), "size", "written"]
    fp32 = ["fp32 (source)", _baseline_gate(first), "baseline", *(_point(p, p) for p in reference)]
    rows = [header, [*fp32, _size(first.reference_size, first.reference_size), "-"]]
    for outcome in outcomes:
        result = outcome.verdict
        if outcome.search is not None:
            result += f" (accuracy-aware: {len(outcome.settings.exclude_nodes)} node(s) kept in float)"
        speed = outcome.speed or ()
        rows.append(
            [
                outcome.settings.label,
                outcome.gate.summary() if outcome.gate is not None else "-",
                result,
                *(_point(speed[i], reference[i]) if i < len(speed) else "-" for i in range(len(batches))),
                _size(outcome.file_size, outcome.reference_size),
                str(outcome.written) if outcome.written is not None else "not written",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def quantize(
    model: Annotated[str, typer.Argument(help="The FP32 ONNX model's name in the repository.")],
    eval_set: Annotated[
        Path,
        typer.Option("--eval-set", help=".npz of inputs by name (+ 'labels' for accuracy): the gate's data."),
    ],
    metric: Annotated[GateMetric, typer.Option(help="Gate: accuracy (labels), cosine (embeddings), max-abs.")],
    methods: Annotated[
        list[QuantMethod] | None, typer.Option("--method", "-m", help="Variant to make (repeat); default int8-dynamic.")
    ] = None,
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    per_channel: Annotated[bool, typer.Option("--per-channel", help="INT8: one weight scale per channel.")] = False,
    reduce_range: Annotated[
        bool, typer.Option("--reduce-range", help="INT8: 7-bit weights (CPUs without VNNI).")
    ] = False,
    op_types: Annotated[
        list[str] | None, typer.Option("--op-type", help="INT8: op type to quantize (repeat); default: all ORT does.")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Node name to keep in float (repeat).")] = None,
    calibration_set: Annotated[
        Path | None,
        typer.Option("--calibration-set", help="int8-static: .npz of calibration inputs (not the eval set)."),
    ] = None,
    calibrate: Annotated[
        CalibrationMethod | None, typer.Option("--calibrate", help="int8-static: range method (default minmax).")
    ] = None,
    percentile: Annotated[float | None, typer.Option(help="int8-static percentile method: percentile kept.")] = None,
    accuracy_aware: Annotated[
        bool,
        typer.Option("--accuracy-aware", help="On a failed gate, keep the costliest nodes in float until it passes."),
    ] = False,
    granularity: Annotated[
        Granularity, typer.Option(help="Accuracy-aware candidates: node or layer.")
    ] = Granularity.NODE,
    sensitivity_items: Annotated[
        int | None, typer.Option(help="Accuracy-aware: measure node costs on this many eval items (default all).")
    ] = None,
    max_tries: Annotated[int, typer.Option(help="Accuracy-aware: most quantize-and-gate tries.")] = DEFAULT_MAX_TRIES,
    as_version: Annotated[
        bool, typer.Option("--as-version", help="Write each passing variant as the model's next version.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Model name for the variant (default MODEL_<settings>).")
    ] = None,
    source_version: Annotated[
        int | None, typer.Option(help="Version to quantize (default: the latest unquantized one).")
    ] = None,
    output: Annotated[str | None, typer.Option(help="Output to gate on (default: the first).")] = None,
    max_accuracy_drop: Annotated[float, typer.Option(help="accuracy: largest drop, percentage points.")] = 0.5,
    min_cosine_mean: Annotated[float, typer.Option(help="cosine: lowest mean.")] = 0.99,
    min_cosine_min: Annotated[float, typer.Option(help="cosine: lowest per-item value.")] = 0.98,
    max_abs_error: Annotated[float, typer.Option(help="max-abs: largest absolute difference.")] = 1e-2,
    batch_size: Annotated[int, typer.Option(help="Batch size the .npz sets are split into.")] = 64,
    speed_seconds: Annotated[
        float, typer.Option(help="Seconds each model is timed per batch size (FP32 and variants interleaved).")
    ] = SPEED_SECONDS,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a variant model's latest version instead of adding one.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also write a passing variant that is neither smaller nor faster than FP32."),
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the table's figures as JSON (FP32 baseline + variants).")
    ] = None,
) -> None:
    """Make INT8/FP16 variants of a model, gate each against FP32, and write those that pass and earn their name."""
    import json

    from tritonforge._atomic import atomic_write_text
    from tritonforge.converters.eval_set import EvalSet
    from tritonforge.converters.quality_gate import GateSpec
    from tritonforge.converters.variants import outcomes_report, quantize_to_repository

    settings = build_settings(
        methods or [QuantMethod.INT8_DYNAMIC], per_channel=per_channel, reduce_range=reduce_range,
        calibrate=calibrate, percentile=percentile, op_types=op_types or (), exclude=exclude or (),
    )  # fmt: skip
    gate = GateSpec(
        metric=metric, output=output, max_accuracy_drop_points=max_accuracy_drop, min_cosine_mean=min_cosine_mean,
        min_cosine_min=min_cosine_min, max_abs_error=max_abs_error,
    )  # fmt: skip
    outcomes = quantize_to_repository(
        repository=repository,
        model_name=model,
        settings=settings,
        eval_set=EvalSet.from_npz(eval_set, batch_size=batch_size),
        gate=gate,
        calibration=None if calibration_set is None else EvalSet.from_npz(calibration_set, batch_size=batch_size),
        source_version=source_version,
        as_version=as_version,
        variant_name=name,
        accuracy_aware=accuracy_aware,
        granularity=granularity,
        sensitivity_items=sensitivity_items,
        max_tries=max_tries,
        speed_seconds=speed_seconds,
        overwrite=overwrite,
        force=force,
    )
    typer.echo(format_outcomes(outcomes))
    if report is not None:
        atomic_write_text(report, json.dumps(outcomes_report(model, outcomes), indent=2) + "\n")
        typer.echo(f"report: {report}")
    if not any(o.written is not None for o in outcomes):
        misses = "; ".join(f"{o.settings.label}: {o.verdict}" for o in outcomes)
        if not any(o.passed for o in outcomes):
            misses += "; loosen the tolerance, try --per-channel or another --method, or add --accuracy-aware"
        raise QualityGateError(f"nothing was written for '{model}': {misses}")
