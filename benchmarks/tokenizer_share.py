"""The tokenizer's share of latency: the `minilm` ensemble (strings in) against its encoder alone (token ids in).

    .venv/bin/python benchmarks/tokenizer_share.py --seconds 2 --repeats 5 --concurrency 1 4 --batch 1 8

Both run on the same embedded tritonserver in one run. For each concurrency c and request size b (sentences per
request), c client threads send requests for `--seconds`: the encoder-only side sends token ids the client tokenized
beforehand (outside the timing), the ensemble side sends the same sentences as strings and the server tokenizes them
(python-backend tokenizer -> ONNX encoder). The tokenizer's share is 1 - encoder median / ensemble median: what
moving tokenization to the server adds to a request, the extra ensemble hop included. Two ensembles are measured, one
per tokenizer padding scope ("request": each request padded to its own longest; "batch": every request of one
tokenizer execution padded to the longest among them, so the encoder's dynamic batcher can merge them). Medians are
over `--repeats` rounds, the sides alternating within each round so machine noise hits all of them; the clients
share this machine's cores with the server. Beside the client-side medians the table shows Triton's own statistics for
each measurement: the tokenizer's and the encoder's compute per request, and the encoder's average executed batch.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from tritonforge.client.embedding import text_batch
from tritonforge.examples import minilm
from tritonforge.loadtests.closed_loop import LoopFigures, run_closed_loop
from tritonforge.serving.launcher import EmbeddedTriton

BATCH_PADDED = "minilm_batchpad"


def _requests(sentences: list[str], size: int, *, as_text: bool) -> list[dict[str, npt.NDArray[Any]]]:
    """Cut the sentences into requests of `size`: strings for an ensemble, or token ids padded to each one's longest."""
    groups = [sentences[i : i + size] for i in range(0, len(sentences) - size + 1, size)]
    if as_text:
        return [{minilm.TEXT_INPUT: text_batch(group)} for group in groups]
    return [dict(minilm.tokenize(group)) for group in groups]


_COMPUTE = ("compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class Counters:
    """Cumulative Triton statistics of one model: successful requests, their compute time, executions."""

    requests: int
    compute_ns: int
    executions: int
    items: int

    def minus(self, before: Counters) -> Counters:
        """The counters accumulated since `before`."""
        return Counters(
            self.requests - before.requests,
            self.compute_ns - before.compute_ns,
            self.executions - before.executions,
            self.items - before.items,
        )

    @property
    def compute_ms_per_request(self) -> float:
        """Mean server-side compute time (input, infer, output) per request."""
        return self.compute_ns / max(self.requests, 1) / 1e6

    @property
    def items_per_execution(self) -> float:
        """Mean batch the model executed (items, not requests)."""
        return self.items / max(self.executions, 1)


def _counters(url: str, models: tuple[str, ...]) -> dict[str, Counters]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        found = {}
        for model in models:
            stats = client.get_inference_statistics(model).model_stats[0]
            compute = sum(getattr(stats.inference_stats, name).ns for name in _COMPUTE)
            found[model] = Counters(
                stats.inference_stats.success.count, compute, stats.execution_count, stats.inference_count
            )
        return found
    finally:
        client.close()


@dataclass(frozen=True)
class Side:
    """One way of asking for embeddings: the model called, and the tokenizer whose server statistics it reads."""

    name: str
    model: str
    tokenizer: str | None


SIDES = (
    Side("encoder", minilm.ENCODER_NAME, None),
    Side("ensemble/request", minilm.MODEL_NAME, minilm.TOKENIZER_NAME),
    Side("ensemble/batch", BATCH_PADDED, f"{BATCH_PADDED}_tokenizer"),
)


@dataclass(frozen=True)
class Round:
    """One measurement of one side: client-side figures and the server's counters over it."""

    figures: LoopFigures
    tokenizer: Counters | None
    encoder: Counters


def _run_side(url: str, side: Side, concurrency: int, size: int, seconds: float, sentences: list[str]) -> Round:
    requests = _requests(sentences, size, as_text=side.tokenizer is not None)
    models = (minilm.ENCODER_NAME,) + ((side.tokenizer,) if side.tokenizer else ())
    before = _counters(url, models)
    figures = run_closed_loop(
        url=url, model=side.model, requests=requests, concurrency=concurrency, seconds=seconds, timeout_s=60.0
    )
    after = _counters(url, models)
    delta = {model: after[model].minus(before[model]) for model in models}
    return Round(figures, delta.get(side.tokenizer or ""), delta[minilm.ENCODER_NAME])


def _report(rows: dict[tuple[int, int], dict[str, list[Round]]], repeats: int, seconds: float) -> None:
    print(f"\nmedians of {repeats} rounds x {seconds:g} s; share = 1 - encoder p50 / ensemble p50;")
    print("tok ms / enc ms = the tokenizer's / encoder's mean compute per request on the server (Triton statistics)")
    print(
        f"{'conc':>4} {'batch':>5} | {'encoder p50':>11} {'req/s':>6} {'enc ms':>6} {'enc batch':>9} |"
        f" {'ens/request p50':>15} {'share':>6} {'tok ms':>6} {'enc ms':>6} |"
        f" {'ens/batch p50':>13} {'share':>6} {'enc batch':>9}"
    )
    for (concurrency, size), results in rows.items():
        p50 = {name: statistics.median(r.figures.p50_ms for r in rounds) for name, rounds in results.items()}
        share = {name: 1.0 - p50["encoder"] / p50[name] for name in results}
        rps = statistics.median(r.figures.requests_per_s for r in results["encoder"])
        enc_batch = {name: statistics.median(r.encoder.items_per_execution for r in results[name]) for name in results}
        enc_ms = {name: statistics.median(r.encoder.compute_ms_per_request for r in results[name]) for name in results}
        tok_ms = statistics.median(
            r.tokenizer.compute_ms_per_request for r in results["ensemble/request"] if r.tokenizer
        )
        print(
            f"{concurrency:>4} {size:>5} | {p50['encoder']:>8.2f} ms {rps:>6.0f} {enc_ms['encoder']:>6.2f}"
            f" {enc_batch['encoder']:>9.2f} | {p50['ensemble/request']:>12.2f} ms {share['ensemble/request']:>6.0%}"
            f" {tok_ms:>6.2f} {enc_ms['ensemble/request']:>6.2f} |"
            f" {p50['ensemble/batch']:>10.2f} ms {share['ensemble/batch']:>6.0%} {enc_batch['ensemble/batch']:>9.2f}"
        )


def main() -> None:
    """Build the repository, serve it, measure every configuration and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each measurement")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; medians are reported")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="sentences per request")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    sentences = minilm.evaluation_sentences(n=512, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "repo"
        build = minilm.build_minilm(repository)
        minilm.write_tokenizer_model(repository, name=f"{BATCH_PADDED}_tokenizer", padding="batch")
        minilm.write_text_ensemble(repository, name=BATCH_PADDED, tokenizer=f"{BATCH_PADDED}_tokenizer")
        print(f"export {build.export_seconds:.1f} s (load, trace, parity gate), ONNX {build.onnx_bytes / 1e6:.1f} MB")
        rows: dict[tuple[int, int], dict[str, list[Round]]] = {
            (c, b): {side.name: [] for side in SIDES} for c in args.concurrency for b in args.batch
        }
        with EmbeddedTriton(repository=repository) as server:
            for round_index in range(args.repeats):
                order = SIDES if round_index % 2 == 0 else SIDES[::-1]  # neither side always goes first
                for (concurrency, size), results in rows.items():
                    for side in order:
                        measured = _run_side(server.grpc_url, side, concurrency, size, args.seconds, sentences)
                        results[side.name].append(measured)
    _report(rows, args.repeats, args.seconds)


if __name__ == "__main__":
    main()
