"""Fuzz every served example model with malformed raw gRPC requests mixed with valid traffic, and count what happened.

    .venv/bin/python benchmarks/fuzz_served.py --malformed 10000 --valid 5000 --concurrency 8 --seed 0

Builds digits and the minilm ensemble (encoder, tokenizer) into a temporary repository, serves it with the embedded
tritonserver, answers every valid request once alone (the quiet pass), then sends the seeded mix from `--concurrency`
threads (tritonforge/serving/fuzz.py makes the requests). Prints requests, errors and answers by kind, valid requests
that failed or got a different answer, malformed ones that got an answer, whether the server survived, and how long
it took to stop (and its exit code: 1 when a model never unloaded and Triton gave up at its exit timeout).

Kinds in `fuzz.KNOWN_FATAL` kill a model's python-backend stub (Triton 2.51 never restarts it), so they stay out of
the mix; `--holes` sends each once at the end, lets the launcher's `watch()` restart the server as `tritonforge serve`
does, and reports whether the model answers again.
"""

from __future__ import annotations

import argparse
import collections
import logging
import re
import tempfile
import time
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2_grpc

from tritonforge.examples import minilm
from tritonforge.examples.digits import build_digits
from tritonforge.serving import fuzz
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions

MODELS = ("digits", minilm.ENCODER_NAME, minilm.TOKENIZER_NAME, minilm.MODEL_NAME)


def build_repository(root: Path) -> Path:
    """Build digits and the minilm ensemble into one repository (about 30 s)."""
    repository = root / "model_repository"
    build_digits(repository=repository, weights_dir=root / "build")
    minilm.build_minilm(repository)
    return repository


def print_report(report: fuzz.FuzzReport) -> None:
    """The per-kind table and the failures that matter."""
    print(f"\n{'kind':<22}{'sent':>8}{'errors':>8}{'answered':>10}  error codes")
    for kind in sorted(report.sent, key=lambda k: (k not in ("valid", "nan_inf"), k)):
        codes = ", ".join(f"{c} {n}" for c, n in report.error_codes.get(kind, collections.Counter()).most_common())
        print(f"{kind:<22}{report.sent[kind]:>8}{report.errors[kind]:>8}{report.answered[kind]:>10}  {codes}")
    valid = report.sent["valid"] + report.sent["nan_inf"]
    malformed = report.total - valid
    print(f"\n{report.total} requests in {report.seconds:.1f}s: {malformed} malformed, {valid} valid")
    print(f"valid requests failed: {len(report.valid_failed)}; wrong answers: {len(report.wrong_answers)}")
    print(f"malformed requests answered instead of refused: {len(report.malformed_answered)}")
    print(f"UNAVAILABLE retried (queue policy shed it, or the server was gone): {sum(report.retried.values())}")
    for (kind, model, code, message), n in collections.Counter(report.valid_failed).most_common(5):
        print(f"  valid failed x{n}: {kind} {model} {code}: {message[:160]}")
    for (kind, model), n in collections.Counter(report.malformed_answered).most_common(5):
        print(f"  answered x{n}: {kind} {model}")


def probe_holes(server: EmbeddedTriton, generator: fuzz.FuzzGenerator) -> None:
    """Send each known-fatal kind once per model it applies to, let watch() restart, then send a valid request."""
    print("\nknown holes (sent after the mix):")
    for kind in fuzz.KNOWN_FATAL:
        for target in generator.targets:
            case = generator.malformed_for(kind, target)
            if case is None:
                continue
            restarts = server.restarts
            with grpc.insecure_channel(server.grpc_url) as channel:
                outcome = _send(service_pb2_grpc.GRPCInferenceServiceStub(channel), case)
            deadline = time.monotonic() + 10  # a stub that died is seen by the next watch() (a 2 s grace)
            while server.restarts == restarts and time.monotonic() < deadline:
                server.watch()
                time.sleep(0.2)
            with grpc.insecure_channel(server.grpc_url) as channel:
                after = _send(service_pb2_grpc.GRPCInferenceServiceStub(channel), generator.valid(target))
            restarted = server.restarts - restarts
            print(f"  {kind} -> {target.name}: {outcome}; restarts: {restarted}; a valid request after it: {after}")


def _send(stub: service_pb2_grpc.GRPCInferenceServiceStub, case: fuzz.FuzzCase) -> str:
    try:
        stub.ModelInfer(case.request, timeout=30)
    except grpc.RpcError as exc:
        return f"{exc.code().name} ({(exc.details() or '')[:90]})"
    return "answered"


def main() -> None:
    """Build, serve, fuzz, stop; print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--malformed", type=int, default=10_000, help="malformed requests in the mix")
    parser.add_argument("--valid", type=int, default=5_000, help="valid requests in the mix")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holes", action="store_true", help="send each known-fatal kind once after the mix")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="fuzz-served-") as tmp:
        started = time.perf_counter()
        repository = build_repository(Path(tmp))
        print(f"built digits + minilm in {time.perf_counter() - started:.0f}s")
        server = EmbeddedTriton(
            ServerOptions(repository=repository, log_path=Path(tmp) / "tritonserver.log", restart_on_crash=True)
        )
        server.start()
        try:
            targets = fuzz.example_targets(server.grpc_url, MODELS, seed=args.seed)
            generator = fuzz.FuzzGenerator(targets, seed=args.seed, exclude=fuzz.KNOWN_FATAL)
            references = fuzz.reference_answers(server.grpc_url, generator.answer_cases())
            cases = generator.mix(malformed=args.malformed, valid=args.valid)
            step = max(len(cases) // 10, 1)

            def progress(done: int) -> None:
                if done % step == 0:
                    print(f"  {done}/{len(cases)} sent", flush=True)

            report = fuzz.run_cases(server.grpc_url, cases, references, concurrency=args.concurrency, progress=progress)
            print_report(report)
            alive = server.is_running()
            if args.holes and alive:
                probe_holes(server, generator)
        finally:
            alive_at_end = server.is_running()
            stop_started = time.perf_counter()
            code = server.stop()
            stop_s = time.perf_counter() - stop_started
        crashes = len(re.findall(r"Signal \((?:6|11)\)|terminate called", server.log_text()))
        print(f"\nserver alive after the mix: {alive}; alive at the end: {alive_at_end}; restarts: {server.restarts}")
        print(f"crash lines in the server log (signal 6/11, terminate): {crashes}")
        print(f"shutdown: {stop_s:.1f}s, exit code {code}")


if __name__ == "__main__":
    main()
