"""Every served example model fuzzed with malformed raw gRPC requests mixed with valid traffic (real tritonserver).

digits, minilm_encoder, minilm_tokenizer and the minilm ensemble, served together; the requests come from
tritonforge/serving/fuzz.py (seeded, count-bounded). Valid answers are checked against a quiet first pass, which is
itself checked against ONNX Runtime and the tokenizer run in-process. NaN/Inf in float inputs are valid requests: they
are answered (NaN in, NaN out) and must equal the quiet pass's answer.

Two holes of Triton 2.51's python backend are tested on their own servers, because they outlast the test:
- a corrupt BYTES length prefix is caught by the backend's C++ side while it copies a whole batch into shared memory,
  so every request of that batch fails with its error and the requests before it in the batch leak their response
  factories (the tokenizer then never unloads). A tokenizer without dynamic batching keeps the failure to itself;
- dims whose element count x element size wraps int64 to 0 bytes pass Triton's checks and abort the model's stub.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tritonforge.examples import minilm
from tritonforge.examples.digits import DigitsBuild
from tritonforge.serving import fuzz
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions

TEXT_MODELS = (minilm.ENCODER_NAME, minilm.TOKENIZER_NAME, minilm.MODEL_NAME)
MODELS = ("digits", *TEXT_MODELS)
BYTES_CORRUPTING = ("corrupt_bytes_prefix", "byte_count_mismatch")


def _corrupts_bytes(case: fuzz.FuzzCase) -> bool:
    return case.kind in BYTES_CORRUPTING and any(t.datatype == "BYTES" for t in case.request.inputs)


def _linked_repository(root: Path, model_dirs: list[Path]) -> Path:
    """A repository of links to already built models: nothing is rebuilt, and no fixture's repository is touched."""
    root.mkdir(parents=True)
    for model_dir in model_dirs:
        (root / model_dir.name).symlink_to(model_dir.resolve(), target_is_directory=True)
    return root


def _serve(
    repository: Path, log_dir: Path, *, exit_timeout_s: int = 30, restart_on_crash: bool = False
) -> EmbeddedTriton:
    options = ServerOptions(
        repository=repository,
        log_path=log_dir / "tritonserver.log",
        startup_timeout_s=120,
        exit_timeout_s=exit_timeout_s,
        restart_on_crash=restart_on_crash,
    )
    return EmbeddedTriton(options).start()


@pytest.fixture(scope="module")
def model_dirs(digits_build: DigitsBuild, minilm_build: minilm.MiniLMBuild) -> dict[str, Path]:
    dirs = {"digits": digits_build.exported.model_dir}
    dirs.update({name: minilm_build.repository / name for name in TEXT_MODELS})
    return dirs


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    root = tmp_path_factory.mktemp("fuzz")
    triton = _serve(_linked_repository(root / "repository", list(model_dirs.values())), root)
    try:
        yield triton
    finally:
        triton.stop()


@pytest.fixture(scope="module")
def generator(server: EmbeddedTriton) -> fuzz.FuzzGenerator:
    return fuzz.FuzzGenerator(fuzz.example_targets(server.grpc_url, MODELS), seed=0, exclude=fuzz.KNOWN_FATAL)


@pytest.fixture(scope="module")
def references(server: EmbeddedTriton, generator: fuzz.FuzzGenerator) -> dict[str, fuzz.Arrays]:
    return fuzz.reference_answers(server.grpc_url, generator.answer_cases())


def _in_process(model: str, sample: fuzz.Arrays, sessions: dict[str, ort.InferenceSession]) -> fuzz.Arrays:
    if model == minilm.TOKENIZER_NAME:
        return dict(minilm.tokenize([t.decode() for t in sample["TEXT"].reshape(-1)]))
    if model == minilm.MODEL_NAME:
        feeds = minilm.tokenize([t.decode() for t in sample["TEXT"].reshape(-1)])
        return {minilm.EMBEDDING_OUTPUT: sessions[minilm.ENCODER_NAME].run(None, feeds)[0]}
    session = sessions[model]
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, sample), strict=True))


def test_the_quiet_pass_equals_onnx_runtime_and_the_tokenizer_run_in_process(
    generator: fuzz.FuzzGenerator, references: dict[str, fuzz.Arrays], model_dirs: dict[str, Path]
) -> None:
    sessions = {
        name: ort.InferenceSession(str(model_dirs[name] / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        for name in ("digits", minilm.ENCODER_NAME)
    }
    checked: collections.Counter[str] = collections.Counter()
    for target in generator.targets:
        for index, sample in enumerate(target.samples):
            variants = {"valid": sample}
            if f"{target.name}/nan_inf/{index}" in references:
                variants["nan_inf"] = generator.nan_inf(sample)
            for kind, arrays in variants.items():
                want = _in_process(target.name, arrays, sessions)
                assert fuzz.answers_match(references[f"{target.name}/{kind}/{index}"], want), (target.name, kind)
                checked[kind] += 1
    assert checked["valid"] == sum(len(t.samples) for t in generator.targets)
    assert checked["nan_inf"] == len(next(t for t in generator.targets if t.name == "digits").samples)
    nan_answer = references["digits/nan_inf/0"]["logits"]
    assert np.isnan(nan_answer).any()  # NaN in, NaN out: answered, not refused


def test_malformed_requests_among_valid_traffic_get_errors_and_valid_ones_the_right_answer(
    server: EmbeddedTriton, generator: fuzz.FuzzGenerator, references: dict[str, fuzz.Arrays]
) -> None:
    """Every malformed kind but the stub-killing one (its own test below) at concurrency 8, 330 + 300."""
    cases = generator.mix(malformed=330, valid=300)

    report = fuzz.run_cases(server.grpc_url, cases, references, concurrency=8)

    assert server.is_running()
    assert report.valid_failed == []
    assert report.wrong_answers == []
    assert report.malformed_answered == []
    malformed = {kind for kind in report.sent if kind not in ("valid", "nan_inf")}
    assert malformed == set(generator.kinds) - set(fuzz.KNOWN_FATAL)
    assert report.answered["valid"] + report.answered["nan_inf"] == report.sent["valid"] + report.sent["nan_inf"]
    for kind in malformed - {"batch_wraps_to_rows", "negative_batch_dim"}:  # "any": Triton decides those two
        assert report.errors[kind] == report.sent[kind], kind


def test_a_corrupt_bytes_request_fails_alone_and_the_tokenizer_still_unloads(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    repository = _linked_repository(tmp_path / "repository", [model_dirs[m] for m in TEXT_MODELS])
    text = _serve(repository, tmp_path, exit_timeout_s=5)
    try:
        targets = fuzz.example_targets(text.grpc_url, (minilm.TOKENIZER_NAME, minilm.MODEL_NAME))
        generator = fuzz.FuzzGenerator(targets, seed=1)
        references = fuzz.reference_answers(text.grpc_url, generator.answer_cases())
        bad = [generator.malformed(kind) for kind in ("corrupt_bytes_prefix",) * 120 + ("byte_count_mismatch",) * 30]
        cases = [case for pair in zip(bad, (generator.valid() for _ in bad), strict=False) for case in pair]
        cases += [generator.valid() for _ in range(150)]

        report = fuzz.run_cases(text.grpc_url, cases, references, concurrency=8)

        assert text.is_running()
        assert report.malformed_answered == [] and report.wrong_answers == []
    finally:
        code = text.stop()
    assert report.valid_failed == []
    assert code == 0  # every model unloaded within the exit timeout


def test_overflowing_dims_kill_the_encoder_stub_and_the_launcher_restarts_the_server(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    # Triton 2.51: dims whose element count x 8 bytes wraps int64 to 0 pass the byte-size check with no data; the
    # stub's numpy view of them raises before execute() and the stub aborts, and the model would fail every later
    # request while reporting ready. Nothing in model.py runs in time; the launcher's watch() restarts the server.
    repository = _linked_repository(tmp_path / "repository", [model_dirs[minilm.ENCODER_NAME]])
    encoder = _serve(repository, tmp_path, exit_timeout_s=3, restart_on_crash=True)
    try:
        (target,) = fuzz.example_targets(encoder.grpc_url, (minilm.ENCODER_NAME,))
        generator = fuzz.FuzzGenerator([target], seed=2)
        references = fuzz.reference_answers(encoder.grpc_url, generator.answer_cases())

        report = fuzz.run_cases(encoder.grpc_url, [generator.malformed("overflowing_dims")], references, retries=0)
        assert report.errors["overflowing_dims"] == 1
        deadline = time.monotonic() + 60
        while encoder.restarts == 0 and time.monotonic() < deadline:
            encoder.watch()
            time.sleep(0.2)

        assert encoder.restarts == 1 and encoder.is_running()
        assert "python-backend stub of a model died" in encoder.log_text()
        after = fuzz.run_cases(encoder.grpc_url, [generator.valid() for _ in range(20)], references, concurrency=4)
        assert after.valid_failed == [] and after.wrong_answers == []
    finally:
        encoder.stop()
