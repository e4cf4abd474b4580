"""The model zoo's figures: export time, parity per output and size, served vs torch, and quantized variants.

    make zoo                                        # every zoo model; results in runs/zoo/<UTC time>/
    .venv/bin/python benchmarks/zoo.py --models bert,lstm --speed-seconds 1.0

For each model of tests/integration/zoo_models.py (transformers' ResNet, ViT, BERT, DistilBERT with random weights, a
torch LSTM, a two-input/two-output tabular model): the export's wall time through `export_to_repository` (trace,
onnx.checker, the parity gate at every size of every dynamic axis and batch 1 and 8); the gate's max abs error per
output at each size it tried (from the returned ParityReport, max over the batch sizes); the served-vs-torch max abs
error over several sizes at batch 1 and 4 on the embedded tritonserver (inputs sent by name through TritonClient);
and INT8 dynamic, INT8 static and FP16 variants through `quantize_to_repository`, gated on top-1 agreement with FP32
(labels = the FP32 model's own argmax, so FP32 scores 100%; drop <= 0.5 points), with what the run measured of their
size and speed against FP32 (in-process ONNX Runtime, interleaved rounds). Writes zoo.json and table.txt.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # the zoo lives beside the tests that take it served

from zoo_models import ZOO, ZooModel, torch_outputs  # noqa: E402

from tritonforge._runs import new_run_dir  # noqa: E402
from tritonforge.client import TritonClient  # noqa: E402
from tritonforge.converters.eval_set import EvalSet  # noqa: E402
from tritonforge.converters.export import ExportedVersion, export_to_repository  # noqa: E402
from tritonforge.converters.quality_gate import GateMetric, GateSpec  # noqa: E402
from tritonforge.converters.quantize import CalibrationMethod, QuantMethod, QuantSettings  # noqa: E402
from tritonforge.converters.variants import SPEED_SECONDS, quantize_to_repository  # noqa: E402
from tritonforge.errors import TritonForgeError  # noqa: E402
from tritonforge.serving.launcher import EmbeddedTriton  # noqa: E402

SERVED_BATCHES = (1, 4)
EVAL_ITEMS = 256
CALIBRATION_ITEMS = 64
BATCH = 32
_TEXT = ("bert", "distilbert")
VARIANT_LEGEND = (
    "variants (gate: top-1 agreement with FP32; pass = written, REFUSED = the gate passed but it is neither smaller\n"
    "  nor faster, FAIL = the gate failed; items/s vs FP32 at batch 1/16 in process; file size vs FP32):"
)


def _params(entry: ZooModel) -> int:
    return sum(p.numel() for p in entry.build().parameters())


def _export(entry: ZooModel, repository: Path) -> tuple[ExportedVersion, float]:
    start = time.perf_counter()
    exported = export_to_repository(
        model=entry.build(), inputs=entry.specs(), repository=repository, model_name=entry.name,
        source=entry.factory, axis_sizes=entry.axes or None, output_names=entry.output_flags,
    )  # fmt: skip
    return exported, time.perf_counter() - start


def _parity_rows(exported: ExportedVersion) -> list[dict[str, Any]]:
    """Max abs error per output and per axis-size case, the max over the batch sizes."""
    worst: dict[tuple[str, tuple[tuple[str, int], ...]], float] = {}
    for r in exported.parity.results:
        key = (r.output, r.axes)
        worst[key] = max(worst.get(key, 0.0), r.max_abs_err)
    rows = [{"output": o, "axes": dict(axes), "max_abs_err": err} for (o, axes), err in worst.items()]
    return sorted(rows, key=lambda row: (row["output"], sorted(row["axes"].items())))


def _served_errors(entry: ZooModel, client: TritonClient, seed: int = 7) -> dict[str, float]:
    model = entry.build()
    rng = np.random.default_rng(seed)
    worst: dict[str, float] = {}
    for sizes in entry.sizes:
        for batch in SERVED_BATCHES:
            feeds = entry.feeds(rng, batch, sizes)
            served = client.infer(entry.name, feeds)
            for name, want in torch_outputs(model, feeds, entry.outputs).items():
                err = float(np.abs(served[name].astype(np.float64) - want.astype(np.float64)).max())
                worst[name] = max(worst.get(name, 0.0), err)
    return worst


def _eval_sets(entry: ZooModel) -> tuple[EvalSet, EvalSet]:
    """Evaluation and calibration sets in batches of BATCH at the entry's served sizes, labels from FP32."""
    model = entry.build()
    scores = entry.outputs[0]

    def batches(items: int, seed: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        return [entry.feeds(rng, BATCH, entry.sizes[i % len(entry.sizes)]) for i in range(items // BATCH)]

    evaluation = batches(EVAL_ITEMS, 11)
    labels = np.concatenate([torch_outputs(model, b, entry.outputs)[scores].argmax(axis=1) for b in evaluation])
    return EvalSet(batches=tuple(evaluation), labels=labels), EvalSet(batches=tuple(batches(CALIBRATION_ITEMS, 12)))


def _settings(entry: ZooModel) -> list[QuantSettings]:
    # A text model's attention mask holds the dtype's lowest float, which static INT8 cannot calibrate: MatMul only.
    op_types = ("MatMul",) if entry.name in _TEXT else None
    return [
        QuantSettings(method=QuantMethod.INT8_DYNAMIC),
        QuantSettings(method=QuantMethod.INT8_STATIC, calibration=CalibrationMethod.MINMAX, op_types=op_types),
        QuantSettings(method=QuantMethod.FP16),
    ]


def _quantize(entry: ZooModel, repository: Path, speed_seconds: float) -> list[dict[str, Any]] | str:
    evaluation, calibration = _eval_sets(entry)
    try:
        outcomes = quantize_to_repository(
            repository=repository, model_name=entry.name, settings=_settings(entry), eval_set=evaluation,
            gate=GateSpec(metric=GateMetric.ACCURACY, output=entry.outputs[0]), calibration=calibration,
            speed_seconds=speed_seconds,
        )  # fmt: skip
    except TritonForgeError as exc:
        return f"{type(exc).__name__}: {exc}"
    fp32_bytes = (repository / entry.name / "1" / "model.onnx").stat().st_size
    rows = []
    for outcome in outcomes:
        row = outcome.to_dict()
        row["label"] = outcome.settings.label
        row["verdict"] = outcome.verdict
        row["gate_summary"] = outcome.gate.summary() if outcome.gate is not None else None
        row["speedup"] = {str(b): round(x, 3) for b, x in outcome.speedups.items()}
        row["size_ratio"] = round(outcome.file_size / fp32_bytes, 3) if outcome.file_size else None
        rows.append(row)
    return rows


def _variant_line(model: str, row: dict[str, Any]) -> str:
    speed = " / ".join(f"{x:.2f}x" for x in row["speedup"].values()) or "-"
    word = row["verdict"].split(":")[0].split(" ")[0]  # pass, REFUSED (gate passed, not earned) or FAIL (gate)
    size = f"{row['size_ratio']:.2f}x" if row["size_ratio"] else "-"
    return f"  {model:11s} {row['label']:26s} {word:8s} {row['gate_summary'] or '-':28s} {speed:13s} {size}"


def _table(results: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'model':11s} {'params':>6s} {'export s':>8s}  {'parity max abs (worst size)':30s} served max abs"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['model']:11s} {r['params']:6d} {'-':>8s}  REFUSED: {r['error']}")
            continue
        parity = ", ".join(
            f"{o} {max(p['max_abs_err'] for p in r['parity'] if p['output'] == o):.1e}" for o in r["outputs"]
        )
        served = ", ".join(f"{o} {e:.1e}" for o, e in r["served_max_abs"].items())
        lines.append(f"{r['model']:11s} {r['params']:6d} {r['export_s']:8.2f}  {parity:30s} {served}")
    lines += ["", "parity per size (max abs over batch 1 and 8):"]
    for r in results:
        for p in r.get("parity", []):
            sizes = ", ".join(f"{a}={s}" for a, s in p["axes"].items()) or "static"
            lines.append(f"  {r['model']:11s} {p['output']:9s} {sizes:22s} {p['max_abs_err']:.2e}")
    lines += ["", VARIANT_LEGEND, f"  {'model':11s} {'variant':26s} {'result':8s} {'gate':28s} {'b1 / b16':13s} size"]
    for r in results:
        variants = r.get("variants")
        if isinstance(variants, str):
            lines.append(f"  {r['model']:11s} {variants}")
        elif variants:
            lines += [_variant_line(r["model"], v) for v in variants]
    return "\n".join(lines)


def run(entries: Sequence[ZooModel], out: Path, *, speed_seconds: float, quantize: bool) -> list[dict[str, Any]]:
    """Export, serve and quantize each zoo model in a temporary repository; return one JSON-ready row per model."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tritonforge-zoo-") as tmp:
        repository = Path(tmp) / "model_repository"
        exported: list[ZooModel] = []
        for entry in entries:
            row: dict[str, Any] = {"model": entry.name, "params": _params(entry), "inputs": list(entry.inputs)}
            try:
                version, seconds = _export(entry, repository)
            except TritonForgeError as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            else:
                exported.append(entry)
                axes = {a: {"sizes": list(s), "typical": t} for a, s, t in version.parity.axis_sizes}
                row.update(export_s=round(seconds, 3), outputs=list(entry.outputs), axes=axes,
                           parity=_parity_rows(version))  # fmt: skip
            results.append(row)
            print(f"exported {entry.name}: {row.get('export_s', row.get('error'))}", flush=True)
        by_name = {r["model"]: r for r in results}
        if exported:
            with EmbeddedTriton(
                repository=repository, log_path=out / "tritonserver.log", startup_timeout_s=180
            ) as server:
                with TritonClient(server.grpc_url, timeout_s=30.0) as client:
                    for entry in exported:
                        client.wait_until_ready(entry.name, timeout_s=60.0)
                        by_name[entry.name]["served_max_abs"] = _served_errors(entry, client)
        if quantize:
            for entry in exported:
                print(f"quantizing {entry.name}", flush=True)
                by_name[entry.name]["variants"] = _quantize(entry, repository, speed_seconds)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the zoo, write zoo.json and table.txt into a new run folder, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated zoo names (default: all)", default=None)
    parser.add_argument("--speed-seconds", type=float, default=SPEED_SECONDS, help="timing per model per batch")
    parser.add_argument("--no-quantize", action="store_true", help="skip the quantized variants")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: runs/zoo/<UTC time>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    names = args.models.split(",") if args.models else [e.name for e in ZOO]
    unknown = sorted(set(names) - {e.name for e in ZOO})
    if unknown:
        parser.error(f"unknown zoo models {unknown}; choose from {[e.name for e in ZOO]}")
    out = args.out or new_run_dir(ROOT / "runs" / "zoo")
    out.mkdir(parents=True, exist_ok=True)
    entries = [e for e in ZOO if e.name in names]
    started = time.perf_counter()
    results = run(entries, out, speed_seconds=args.speed_seconds, quantize=not args.no_quantize)
    table = _table(results)
    meta = {"wall_s": round(time.perf_counter() - started, 1), "speed_seconds": args.speed_seconds}
    (out / "zoo.json").write_text(json.dumps({"meta": meta, "models": results}, indent=2, default=str) + "\n")
    (out / "table.txt").write_text(table + "\n")
    print(table)
    print(f"\nwritten: {out / 'zoo.json'}, {out / 'table.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
