"""`tritonforge k8s render VALUES`: the manifests for one model from one values file.

tritonforge k8s render k8s/values.example.yaml | kubectl apply -f -
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def render(
    values: Annotated[Path, typer.Argument(help="Values file (see k8s/values.example.yaml).")],
    k8s_dir: Annotated[Path, typer.Option("--k8s-dir", help="The repository's k8s/ folder.")] = Path("k8s"),
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the YAML here instead of stdout.")] = None,
) -> None:
    """Render the kustomize overlay chosen in VALUES with its image tag, model repository and HPA bounds."""
    from tritonforge._atomic import atomic_write_text
    from tritonforge.k8s_render import load_values
    from tritonforge.k8s_render import render as render_manifests

    manifests = render_manifests(load_values(values), k8s_dir=k8s_dir)
    if out is None:
        typer.echo(manifests, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, manifests)
    typer.echo(
        f"wrote {out} ({manifests.count(chr(10) + 'kind: ') + manifests.startswith('kind: ')} objects)", err=True
    )
