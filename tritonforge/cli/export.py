"""`tritonforge export`: a PyTorch factory becomes a new, parity-gated ONNX version in a Triton repository.

tritonforge export tritonforge.examples.digits:build_model --weights build/digits_cnn.pt
    --input image:1x8x8:float32 --output logits --name digits    (one command line)
tritonforge export pkg.bert:build --input input_ids:seq:int64:0..30521 --input attention_mask:seq:int64:0..1
    --axis seq=1,16,128 --sample batch.npz --name bert            (a shared sequence axis, real example inputs)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from tritonforge.converters.parity import ParityReport
from tritonforge.converters.triton_config import InstanceKind

_INPUT_HELP = (
    "NAME:SHAPE[:DTYPE[:LO..HI]], repeat per input. NAME: a parameter of forward(). SHAPE: sizes after the batch "
    "axis joined by 'x': a size, -1 (a dynamic axis of its own) or an axis name such as seq (shared by every input "
    "that names it). DTYPE: default float32. LO..HI: the range of generated integer values, e.g. 0..30521."
)


def format_parity_table(report: ParityReport) -> str:
    """Return the gate's figures as an aligned text table (output, batch, each axis, max abs, max rel, result)."""
    axes = [name for name, _, _ in report.axis_sizes]
    rows = [("output", "batch", *axes, "max abs", "max rel", "result")]
    # Sorted by axis sizes, then batch (a stable sort keeps the outputs in order): each size reads as one block.
    for r in sorted(report.results, key=lambda r: (tuple(size for _, size in r.axes), r.batch_size)):
        at = dict(r.axes)
        rows.append(
            (
                r.output,
                str(r.batch_size),
                *(str(at.get(a, "")) for a in axes),
                f"{r.max_abs_err:.3g}",
                f"{r.max_rel_err:.3g}",
                "ok" if r.passed else "FAIL",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"tolerance: atol {report.atol:g}, rtol {report.rtol:g}")
    for name, sizes, typical in report.axis_sizes:
        lines.append(f"axis {name}: sizes {', '.join(map(str, sizes))}; traced at {typical} (the typical size)")
    return "\n".join(lines)


@contextlib.contextmanager
def _quiet_repository_log() -> Iterator[None]:
    """The summary says where the version was written; the repository's own INFO line would say it twice."""
    logger = logging.getLogger("tritonforge.converters.repository")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def export(
    model_spec: Annotated[str, typer.Argument(help="package.module:factory returning a torch.nn.Module.")],
    inputs: Annotated[list[str], typer.Option("--input", "-i", help=_INPUT_HELP)],
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="State dict (torch.save), loaded with weights_only=True.")
    ] = None,
    outputs: Annotated[
        list[str] | None,
        typer.Option("--output", "-o", help="Output name, in order (repeat per output); default: the model's own."),
    ] = None,
    axes: Annotated[
        list[str] | None,
        typer.Option(
            "--axis",
            help="NAME=S1,S2,S3: sizes the parity gate tries for a dynamic axis (repeatable); the middle one is "
            "traced. Default: 1, a typical size and a large one (>= 32).",
        ),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(
            "--sample",
            help="Real example inputs, batch axis first: .npz (by input name), .npy (one input) or .json "
            "({name: nested list}); traced on and compared by the parity gate.",
        ),
    ] = None,
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Model name (default: the module's last part).")
    ] = None,
    max_batch_size: Annotated[int, typer.Option(help="Largest batch Triton may form.")] = 64,
    max_queue_delay_us: Annotated[int, typer.Option(help="Dynamic batching queue delay, microseconds.")] = 100,
    instances: Annotated[int, typer.Option("--instances", help="Model instances per device.")] = 1,
    instance_kind: Annotated[
        InstanceKind, typer.Option(help="Where instances run; KIND_AUTO: GPU if the server has one.")
    ] = InstanceKind.AUTO,
    opset: Annotated[int, typer.Option(help="ONNX opset (17 to 20).")] = 17,
    atol: Annotated[float, typer.Option(help="Parity gate absolute tolerance.")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Parity gate relative tolerance.")] = 1e-3,
    version: Annotated[int | None, typer.Option(help="Version to write (default: the next one).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --version.")] = False,
    new_signature: Annotated[
        bool,
        typer.Option(
            "--new-signature",
            help="Allow inputs, outputs or max batch size that differ from the model's config.pbtxt (its clients "
            "must change); recorded in the manifest.",
        ),
    ] = False,
) -> None:
    """Export a PyTorch model to ONNX, check parity with ONNX Runtime, and add it to the repository."""
    from tritonforge.cli.signature import format_model_signature
    from tritonforge.converters.export import default_model_name, export_to_repository, load_factory
    from tritonforge.converters.sample_file import load_sample
    from tritonforge.converters.specs import parse_axis_sizes, parse_tensor_spec

    specs = [parse_tensor_spec(text) for text in inputs]
    axis_sizes = dict(parse_axis_sizes(text) for text in axes or [])
    example = load_sample(sample, specs) if sample is not None else None
    model_name = name or default_model_name(repository, model_spec)
    with _quiet_repository_log():
        exported = export_to_repository(
            model=load_factory(model_spec, weights),
            inputs=specs,
            repository=repository,
            model_name=model_name,
            source=model_spec + (f" (weights {weights})" if weights else ""),
            output_names=outputs or None,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            instance_count=instances,
            instance_kind=instance_kind,
            opset=opset,
            atol=atol,
            rtol=rtol,
            version=version,
            overwrite=overwrite,
            sample=example,
            axis_sizes=axis_sizes or None,
            new_signature=new_signature,
        )
    typer.echo(format_parity_table(exported.parity))
    if exported.signature is not None:
        typer.echo(format_model_signature(exported.signature), nl=False)
    change = exported.manifest.get("signature_change")
    if change:
        typer.echo(f"new signature (--new-signature): {'; '.join(change['differences'])}")
    typer.echo(f"wrote {exported.model_dir / str(exported.version)}")
