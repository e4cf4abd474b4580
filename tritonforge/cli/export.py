"""`tritonforge export`: a PyTorch factory becomes a new, parity-gated ONNX version in a Triton repository.

tritonforge export tritonforge.examples.digits:build_model --weights build/digits_cnn.pt
    --input image:1x8x8:float32 --output logits --name digits    (one command line)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonforge.converters.parity import ParityReport
from tritonforge.converters.triton_config import InstanceKind


def format_parity_table(report: ParityReport) -> str:
    """Return the gate's figures as an aligned text table (output, batch, max abs, max rel, result)."""
    rows = [("output", "batch", "max abs", "max rel", "result")]
    rows += [
        (r.output, str(r.batch_size), f"{r.max_abs_err:.3g}", f"{r.max_rel_err:.3g}", "ok" if r.passed else "FAIL")
        for r in report.results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"tolerance: atol {report.atol:g}, rtol {report.rtol:g}")
    return "\n".join(lines)


def export(
    model_spec: Annotated[str, typer.Argument(help="package.module:factory returning a torch.nn.Module.")],
    inputs: Annotated[
        list[str],
        typer.Option("--input", "-i", help="name:1x8x8:float32, shape without the batch axis (repeat per input)."),
    ],
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="State dict (torch.save), loaded with weights_only=True.")
    ] = None,
    outputs: Annotated[
        list[str] | None, typer.Option("--output", "-o", help="Output name, in order (repeat per output).")
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
) -> None:
    """Export a PyTorch model to ONNX, check parity with ONNX Runtime, and add it to the repository."""
    from tritonforge.converters.export import export_to_repository, load_factory
    from tritonforge.converters.specs import parse_tensor_spec

    specs = [parse_tensor_spec(text) for text in inputs]
    exported = export_to_repository(
        model=load_factory(model_spec, weights),
        inputs=specs,
        repository=repository,
        model_name=name or model_spec.split(":", 1)[0].rsplit(".", 1)[-1],
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
    )
    typer.echo(f"wrote {exported.model_dir / str(exported.version)} (model '{exported.model_dir.name}')")
    typer.echo(format_parity_table(exported.parity))
