"""Both examples' FP32 models and INT8 variants side by side on the embedded Triton: the README's compare tables.

    .venv/bin/python benchmarks/compare_variants.py --repository model_repository   # after `make demo`

Runs `tritonforge compare` for `digits` (held-out images) and `minilm_encoder` (token ids of real sentences: one
batch of similar-length sentences from the evaluation set, so every request has the same, typical length) and prints
Markdown tables headed with the date and the machine. Builds the models and variants first if they are missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from pathlib import Path

from tritonforge.loadtests.compare import compare_variants, format_compare


def _ensure_models(repository: Path) -> None:
    from tritonforge.examples.digits import build_digits
    from tritonforge.examples.minilm import build_minilm
    from tritonforge.examples.variants import DIGITS_INT8, MINILM_ENCODER_INT8, quantize_digits, quantize_minilm

    if not (repository / "digits" / "1").is_dir():
        build_digits(repository=repository, overwrite_version=1)
    if not (repository / DIGITS_INT8).is_dir():
        quantize_digits(repository)
    if not (repository / "minilm_encoder" / "1").is_dir():
        build_minilm(repository, overwrite=True)
    if not (repository / MINILM_ENCODER_INT8).is_dir():
        quantize_minilm(repository)


def main() -> None:
    """Compare both examples' variants and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--large-batch", type=int, default=8)
    args = parser.parse_args()

    from tritonforge.examples.digits import load_split

    _ensure_models(args.repository)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}"
    print(f"{dt.date.today().isoformat()}, {machine}; embedded Triton 2.51 (CPU, ONNX Runtime through the")
    print(f"python backend); {args.concurrency} client threads on the same machine; medians of {args.rounds} rounds")
    from tritonforge.examples.minilm import median_length_rows

    text = median_length_rows()
    for model, samples in (("digits", {"image": load_split().x_test}), ("minilm_encoder", text)):
        report = compare_variants(
            repository=args.repository, model=model, samples=samples, batch_sizes=(1, args.large_batch),
            concurrency=args.concurrency, seconds=args.seconds, rounds=args.rounds,
        )  # fmt: skip
        shape = ", ".join(f"{name} {list(array.shape[1:])}" for name, array in samples.items())
        print(f"\n{model} (items per request: b1 / b{args.large_batch}; item: {shape})\n")
        print(format_compare(report, markdown=True))


if __name__ == "__main__":
    main()
