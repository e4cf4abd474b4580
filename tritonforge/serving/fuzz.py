"""Fuzz a served model with malformed raw gRPC requests mixed with valid traffic, seeded and count-bounded.

    targets = [ModelTarget.from_config(config, samples) for config, samples in ...]
    cases = FuzzGenerator(targets, seed=0).mix(malformed=300, valid=300)
    references = reference_answers(stub, cases)           # a quiet pass: each valid request alone
    report = run_cases(server.grpc_url, cases, references, concurrency=8)
    assert report.valid_failed == [] and report.malformed_answered == []

Requests are `tritonclient.grpc.service_pb2.ModelInferRequest` protobufs built by hand, so nothing on the client side
checks them: each kind breaks one rule that Triton, its python backend or the model must enforce (a wrong datatype
string, a shape that disagrees with the byte count, a batch dim of 0, 2**32 or -2**63, an element count that overflows
int64 to 0 bytes, a corrupt BYTES length prefix, a token id outside the vocabulary, ...). NaN and Inf in float inputs
are valid requests: the model answers them (NaN in, NaN out), and the answer must equal the quiet pass's.

Used by tests/integration/test_fuzz_served.py (a few hundred requests) and benchmarks/fuzz_served.py (10,000+).
"""

from __future__ import annotations

import collections
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import numpy as np
import numpy.typing as npt
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from tritonforge.errors import ServerError

Expect = Literal["answer", "error", "any"]
Arrays = dict[str, npt.NDArray[Any]]

_NUMPY_TO_TRITON = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
}
_TRITON_TO_NUMPY = {name: dtype for dtype, name in _NUMPY_TO_TRITON.items()}
_ELEMENT_BYTES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "INT16": 2, "FP16": 2, "INT32": 4, "FP32": 4, "INT64": 8, "FP64": 8}
# Batch dims that Triton keeps modulo 2**32 (a uint32): all of these reach the model as a batch of 0.
WRAPPED_BATCH_DIMS = (2**32, 2**33, -(2**63))
OUT_OF_RANGE_IDS = (10**7, -(10**7), 2**62)
# Kinds that kill a python-backend model for good on Triton 2.51: a free dim with element count x element size
# wrapping int64 to 0 passes Triton's byte-size check, then the stub's numpy view of it raises before execute() and the
# stub aborts; Triton still reports the model ready while every later request fails "Stub process ... is not healthy".
# The launcher's watch() (on in `tritonforge serve`) sees the dead stub and restarts the server; in-flight requests of
# the other models are lost in that restart, which is why these kinds stay out of the mixed traffic.
KNOWN_FATAL = ("overflowing_dims",)


@dataclass(frozen=True)
class InputSpec:
    """A configured input: protocol datatype ("FP32", "BYTES", ...) and dims without the batch axis (-1 free)."""

    name: str
    datatype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelTarget:
    """A served model to fuzz: its inputs, max_batch_size and valid sample requests (each with its batch axis).

    Attributes:
        index_inputs: integer inputs whose values index a table (token ids): out-of-range values are a malformed kind.
    """

    name: str
    inputs: tuple[InputSpec, ...]
    max_batch_size: int
    samples: tuple[Arrays, ...]
    index_inputs: tuple[str, ...] = ()

    @classmethod
    def from_config(
        cls, config: model_config_pb2.ModelConfig, samples: Sequence[Arrays], index_inputs: Sequence[str] = ()
    ) -> ModelTarget:
        """Describe a model from its config (as served: `ModelConfig` over gRPC, or config.pbtxt)."""
        inputs = tuple(
            InputSpec(i.name, _protocol_datatype(i.data_type), tuple(int(d) for d in i.dims)) for i in config.input
        )
        return cls(config.name, inputs, int(config.max_batch_size), tuple(samples), tuple(index_inputs))


@dataclass(frozen=True)
class FuzzCase:
    """One request and what the server must do with it.

    Attributes:
        kind: "valid", "nan_inf" or the malformed kind.
        expect: "answer" (equal to the quiet pass's answer for `answer_key`), "error", or "any" (the server must only
            survive it: Triton itself decides, e.g. a batch dim of 2**32 + n is served as a batch of n).
        answer_key: which quiet-pass answer an "answer" case must equal.
    """

    kind: str
    model: str
    request: service_pb2.ModelInferRequest
    expect: Expect
    answer_key: str | None = None


def encode_tensor(array: npt.NDArray[Any]) -> tuple[str, list[int], bytes]:
    """Return (datatype, shape, raw bytes) for one input, BYTES as 4-byte little-endian length prefixes."""
    if array.dtype == object or array.dtype.kind in "SU":
        items = [x if isinstance(x, bytes) else str(x).encode() for x in array.reshape(-1)]
        return "BYTES", list(array.shape), b"".join(struct.pack("<I", len(x)) + x for x in items)
    return _NUMPY_TO_TRITON[array.dtype], list(array.shape), np.ascontiguousarray(array).tobytes()


def infer_request(
    model: str, tensors: Iterable[tuple[str, str, Sequence[int], bytes | None]], version: str = ""
) -> service_pb2.ModelInferRequest:
    """Build a raw ModelInferRequest from (name, datatype, shape, raw bytes) tuples, exactly as given."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype, shape, raw in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype)
        tensor.shape.extend(int(d) for d in shape)
        if raw is not None:  # None: declare the input but send no raw contents for it
            request.raw_input_contents.append(raw)
    return request


def _tensors(arrays: Arrays) -> list[tuple[str, str, list[int], bytes]]:
    return [(name, *encode_tensor(array)) for name, array in arrays.items()]


def _protocol_datatype(data_type: int) -> str:
    name = model_config_pb2.DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


class FuzzGenerator:
    """Seeded source of valid and malformed requests for a set of targets."""

    def __init__(self, targets: Sequence[ModelTarget], *, seed: int = 0, exclude: Iterable[str] = ()) -> None:
        """Targets to fuzz; `exclude`: malformed kinds that `malformed()` and `mix()` never pick."""
        if not targets or any(not t.samples for t in targets):
            raise ValueError("every target needs at least one valid sample request")
        self.targets = list(targets)
        self._rng = np.random.default_rng(seed)
        self._kinds: dict[str, Callable[[ModelTarget, Arrays], tuple[list[Any], str, Expect] | None]] = {
            "wrong_datatype": self._wrong_datatype,
            "unknown_datatype": self._unknown_datatype,
            "byte_count_mismatch": self._byte_count_mismatch,
            "shape_disagrees": self._shape_disagrees,
            "batch_zero": self._batch_zero,
            "batch_wraps_to_zero": self._batch_wraps_to_zero,
            "batch_wraps_to_rows": self._batch_wraps_to_rows,
            "negative_dim": self._negative_dim,
            "negative_batch_dim": self._negative_batch_dim,
            "overflowing_dims": self._overflowing_dims,
            "missing_input": self._missing_input,
            "extra_input": self._extra_input,
            "duplicate_input": self._duplicate_input,
            "missing_raw_contents": self._missing_raw_contents,
            "over_max_batch": self._over_max_batch,
            "unknown_model": self._unknown_model,
            "unknown_version": self._unknown_version,
            "unknown_output": self._unknown_output,
            "corrupt_bytes_prefix": self._corrupt_bytes_prefix,
            "invalid_utf8": self._invalid_utf8,
            "out_of_range_ids": self._out_of_range_ids,
        }
        unknown = set(exclude) - set(self._kinds)
        if unknown:
            raise ValueError(f"unknown malformed kinds {sorted(unknown)}; known: {self.kinds}")
        self._active = [kind for kind in self._kinds if kind not in set(exclude)]

    @property
    def kinds(self) -> list[str]:
        """Every malformed kind this generator knows (not every kind applies to every model)."""
        return list(self._kinds)

    def valid(self, target: ModelTarget | None = None) -> FuzzCase:
        """A valid request: a sample as it is, or with NaN/Inf in a float input (also valid: it must be answered)."""
        target = target or self._pick(self.targets)
        index = int(self._rng.integers(len(target.samples)))
        kind = "nan_inf" if self._has_float(target) and self._rng.random() < 0.25 else "valid"
        arrays = self.nan_inf(target.samples[index]) if kind == "nan_inf" else target.samples[index]
        request = infer_request(target.name, _tensors(arrays))
        return FuzzCase(kind, target.name, request, "answer", f"{target.name}/{kind}/{index}")

    def malformed(self, kind: str | None = None) -> FuzzCase:
        """A malformed request of `kind` (default: a random kind not excluded) for a random target it applies to."""
        for _ in range(1000):
            case = self.malformed_for(kind or self._pick(self._active), self._pick(self.targets))
            if case is not None:
                return case
        raise ValueError(f"malformed kind {kind!r} applies to none of the targets")

    def malformed_for(self, kind: str, target: ModelTarget) -> FuzzCase | None:
        """A malformed request of `kind` for `target`, or None where the kind does not apply to it."""
        sample = target.samples[int(self._rng.integers(len(target.samples)))]
        made = self._kinds[kind](target, dict(sample))
        if made is None:
            return None
        tensors, model, expect = made
        version = "" if kind != "unknown_version" else self._pick(["999", "-5", "x", "0"])
        request = infer_request(model, tensors, version)
        if kind == "unknown_output":
            request.outputs.add(name="no_such_output")
        return FuzzCase(kind, target.name, request, expect)

    def mix(self, *, malformed: int, valid: int) -> list[FuzzCase]:
        """`malformed` malformed and `valid` valid requests, shuffled (seeded)."""
        cases = [self.malformed() for _ in range(malformed)] + [self.valid() for _ in range(valid)]
        order = self._rng.permutation(len(cases))
        return [cases[i] for i in order]

    def answer_cases(self) -> list[FuzzCase]:
        """Every valid request `valid()` can make, once: the quiet pass answers these."""
        cases = []
        for target in self.targets:
            for index, sample in enumerate(target.samples):
                kinds = ["valid", "nan_inf"] if self._has_float(target) else ["valid"]
                for kind in kinds:
                    arrays = self.nan_inf(sample) if kind == "nan_inf" else sample
                    request = infer_request(target.name, _tensors(arrays))
                    cases.append(FuzzCase(kind, target.name, request, "answer", f"{target.name}/{kind}/{index}"))
        return cases

    @staticmethod
    def nan_inf(sample: Arrays) -> Arrays:
        """The sample with NaN, +Inf and -Inf in the first elements of each float input (deterministic)."""
        out = {}
        for name, array in sample.items():
            if array.dtype.kind == "f":
                array = array.copy()
                flat = array.reshape(-1)
                flat[: min(3, flat.size)] = [np.nan, np.inf, -np.inf][: min(3, flat.size)]
            out[name] = array
        return out

    # Malformed kinds: each returns (tensors, model name, expectation), or None where it does not apply.

    def _wrong_datatype(self, target: ModelTarget, sample: Arrays) -> Any:
        tensors = _tensors(sample)
        i = self._pick_index(tensors)
        name, datatype, shape, raw = tensors[i]
        others = [d for d in ("FP32", "FP64", "INT32", "INT64", "UINT8", "FP16", "BOOL", "BYTES") if d != datatype]
        tensors[i] = (name, self._pick(others), shape, raw)
        return tensors, target.name, "error"

    def _unknown_datatype(self, target: ModelTarget, sample: Arrays) -> Any:
        tensors = _tensors(sample)
        i = self._pick_index(tensors)
        name, _, shape, raw = tensors[i]
        tensors[i] = (name, self._pick(["FLOAT32", "", "INT128", "fp32", "STRING", "\x00"]), shape, raw)
        return tensors, target.name, "error"

    def _byte_count_mismatch(self, target: ModelTarget, sample: Arrays) -> Any:
        tensors = _tensors(sample)
        i = self._pick_index(tensors)
        name, datatype, shape, raw = tensors[i]
        cut = int(self._rng.integers(1, 5))
        raw = raw[:-cut] if self._rng.random() < 0.5 and len(raw) > cut else raw + bytes(cut)
        tensors[i] = (name, datatype, shape, raw)
        return tensors, target.name, "error"

    def _shape_disagrees(self, target: ModelTarget, sample: Arrays) -> Any:
        tensors = _tensors(sample)
        i = self._pick_index(tensors)
        name, datatype, shape, raw = tensors[i]
        if self._rng.random() < 0.5:
            shape = shape + [1] if self._rng.random() < 0.5 else shape[:-1]  # rank changed, same bytes
        else:
            axis = int(self._rng.integers(len(shape)))
            shape = list(shape)
            shape[axis] += int(self._rng.integers(1, 4))
        tensors[i] = (name, datatype, shape, raw)
        return tensors, target.name, "error"

    def _batch_zero(self, target: ModelTarget, sample: Arrays) -> Any:
        if target.max_batch_size == 0:
            return None
        return [(n, d, [0, *s[1:]], b"") for n, d, s, _ in _tensors(sample)], target.name, "error"

    def _batch_wraps_to_zero(self, target: ModelTarget, sample: Arrays) -> Any:
        if target.max_batch_size == 0:
            return None
        dim = self._pick(list(WRAPPED_BATCH_DIMS))
        return [(n, d, [dim, *s[1:]], b"") for n, d, s, _ in _tensors(sample)], target.name, "error"

    def _batch_wraps_to_rows(self, target: ModelTarget, sample: Arrays) -> Any:
        """A batch dim of 2**32 + n with n rows of data: Triton serves it as a batch of n (its choice, not ours)."""
        if target.max_batch_size == 0:
            return None
        return [(n, d, [2**32 + s[0], *s[1:]], raw) for n, d, s, raw in _tensors(sample)], target.name, "any"

    def _negative_dim(self, target: ModelTarget, sample: Arrays) -> Any:
        """A negative dim other than the batch dim (Triton checks those against the config)."""
        tensors = _tensors(sample)
        i = self._pick_index(tensors)
        name, datatype, shape, raw = tensors[i]
        first = 1 if target.max_batch_size else 0
        if len(shape) <= first:
            return None
        shape = list(shape)
        shape[int(self._rng.integers(first, len(shape)))] = self._pick([-1, -2, -7, -(2**31), -(2**62)])
        tensors[i] = (name, datatype, shape, raw)
        return tensors, target.name, "error"

    def _negative_batch_dim(self, target: ModelTarget, sample: Arrays) -> Any:
        """A negative batch dim, the data unchanged: Triton keeps it modulo 2**32 (-(2**32 - n) is a batch of n)."""
        if target.max_batch_size == 0:
            return None
        tensors = _tensors(sample)
        rows = tensors[0][2][0]
        dim = self._pick([-1, -rows, -(2**31), -(2**62), -(2**32 - rows)])
        return [(n, d, [dim, *s[1:]], raw) for n, d, s, raw in tensors], target.name, "any"

    def _overflowing_dims(self, target: ModelTarget, sample: Arrays) -> Any:
        """A free dim so large that element count times element size wraps int64 to 0 bytes, sent with no data."""
        free = [s for s in target.inputs if -1 in s.dims and s.datatype in _ELEMENT_BYTES and s.name in sample]
        if not free:
            return None
        spec = self._pick(free)
        shift = {1: 64, 2: 63, 4: 62, 8: 61}[_ELEMENT_BYTES[spec.datatype]]
        rows = [sample[spec.name].shape[0]] if target.max_batch_size else []
        shape = rows + [2**shift if d == -1 else d for d in spec.dims]
        shape = [min(d, 2**63 - 1) for d in shape]  # a dim of 2**64 does not fit the protocol's int64: 2**63 - 1
        tensors = [
            (n, d, shape if n == spec.name else s, b"" if n == spec.name else raw) for n, d, s, raw in _tensors(sample)
        ]
        return tensors, target.name, "error"

    def _missing_input(self, target: ModelTarget, sample: Arrays) -> Any:
        tensors = _tensors(sample)
        del tensors[self._pick_index(tensors)]
        return tensors, target.name, "error"

    def _extra_input(self, target: ModelTarget, sample: Arrays) -> Any:
        return _tensors(sample) + [("no_such_input", "FP32", [1, 1], bytes(4))], target.name, "error"

    def _duplicate_input(self, target: ModelTarget, sample: Arrays) -> Any:
        tensors = _tensors(sample)
        return tensors + [tensors[self._pick_index(tensors)]], target.name, "error"

    def _missing_raw_contents(self, target: ModelTarget, sample: Arrays) -> Any:
        """Inputs declared but fewer raw_input_contents than inputs."""
        tensors = _tensors(sample)
        request_tensors: list[Any] = [(n, d, s, None) for n, d, s, _ in tensors]
        return request_tensors, target.name, "error"

    def _over_max_batch(self, target: ModelTarget, sample: Arrays) -> Any:
        if target.max_batch_size == 0:
            return None
        rows = target.max_batch_size + int(self._rng.integers(1, 4))
        grown = {name: np.resize(array, (rows, *array.shape[1:])) for name, array in sample.items()}
        return _tensors(grown), target.name, "error"

    def _unknown_model(self, target: ModelTarget, sample: Arrays) -> Any:
        model = self._pick(["no_such_model", "", target.name + "_", target.name.upper(), "../" + target.name])
        return _tensors(sample), model, "error"

    def _unknown_version(self, target: ModelTarget, sample: Arrays) -> Any:
        return _tensors(sample), target.name, "error"

    def _unknown_output(self, target: ModelTarget, sample: Arrays) -> Any:
        return _tensors(sample), target.name, "error"

    def _corrupt_bytes_prefix(self, target: ModelTarget, sample: Arrays) -> Any:
        tensors = _tensors(sample)
        strings = [i for i, t in enumerate(tensors) if t[1] == "BYTES"]
        if not strings:
            return None
        i = strings[int(self._rng.integers(len(strings)))]
        name, datatype, shape, raw = tensors[i]
        first = struct.unpack_from("<I", raw)[0]
        how = self._pick(["longer", "max", "shorter", "truncated_prefix", "trailing_garbage"])
        if how == "longer":
            raw = struct.pack("<I", first + len(raw)) + raw[4:]
        elif how == "max":
            raw = struct.pack("<I", 2**32 - 1) + raw[4:]
        elif how == "shorter" and first > 0:
            raw = struct.pack("<I", first - 1) + raw[4:]
        elif how == "truncated_prefix":
            raw = raw + b"\x05\x00"
        else:
            raw = raw + struct.pack("<I", 3) + b"abc"
        tensors[i] = (name, datatype, shape, raw)
        return tensors, target.name, "error"

    def _invalid_utf8(self, target: ModelTarget, sample: Arrays) -> Any:
        strings = [name for name, array in sample.items() if array.dtype == object]
        if not strings:
            return None
        array = sample[strings[0]].copy()
        array.reshape(-1)[int(self._rng.integers(array.size))] = b"\xff\xfe not utf-8 \xc3\x28"
        sample[strings[0]] = array
        return _tensors(sample), target.name, "error"

    def _out_of_range_ids(self, target: ModelTarget, sample: Arrays) -> Any:
        names = [name for name in target.index_inputs if name in sample]
        if not names:
            return None
        name = names[int(self._rng.integers(len(names)))]
        array = sample[name].copy()
        array.reshape(-1)[int(self._rng.integers(array.size))] = self._pick(list(OUT_OF_RANGE_IDS))
        sample[name] = array
        return _tensors(sample), target.name, "error"

    def _pick(self, items: Sequence[Any]) -> Any:
        return items[int(self._rng.integers(len(items)))]

    def _pick_index(self, items: Sequence[Any]) -> int:
        return int(self._rng.integers(len(items)))

    @staticmethod
    def _has_float(target: ModelTarget) -> bool:
        return any(spec.datatype in ("FP16", "FP32", "FP64") for spec in target.inputs)


def decode_outputs(response: service_pb2.ModelInferResponse) -> Arrays:
    """Turn a ModelInferResponse's raw outputs into numpy arrays (numeric outputs only)."""
    arrays = {}
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        dtype = _TRITON_TO_NUMPY[output.datatype]
        arrays[output.name] = np.frombuffer(raw, dtype=dtype).reshape(list(output.shape))
    return arrays


def answers_match(got: Arrays, want: Arrays, *, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """True when both carry the same outputs with the same shapes and values (NaN equal to NaN)."""
    if sorted(got) != sorted(want):
        return False
    return all(
        got[name].shape == want[name].shape and np.allclose(got[name], want[name], rtol=rtol, atol=atol, equal_nan=True)
        for name in want
    )


def reference_answers(url: str, cases: Iterable[FuzzCase], *, timeout_s: float = 60.0) -> dict[str, Arrays]:
    """The quiet pass: send each answer case alone, one after another, and keep its outputs by answer_key.

    Raises:
        ServerError: a valid request failed even alone.
    """
    answers = {}
    with grpc.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for case in cases:
            if case.answer_key is None or case.answer_key in answers:
                continue
            try:
                answers[case.answer_key] = decode_outputs(stub.ModelInfer(case.request, timeout=timeout_s))
            except grpc.RpcError as exc:
                raise ServerError(
                    f"valid request {case.answer_key} failed alone: {exc.code().name}: {exc.details()}"
                ) from exc
    return answers


@dataclass
class FuzzReport:
    """What a fuzz run saw.

    Attributes:
        sent: requests sent, by kind.
        errors: requests answered with an error status, by kind.
        answered: requests answered with outputs, by kind.
        valid_failed: (kind, model, status, message) of valid requests that got an error.
        wrong_answers: (kind, model) of valid requests whose answer differs from the quiet pass's.
        malformed_answered: (kind, model) of malformed requests expected to fail that got outputs instead.
        error_codes: gRPC status codes of errors, by kind.
        retried: UNAVAILABLE answers that were retried (shed by the queue policy, or the server gone), by kind.
        seconds: wall time of the run.
    """

    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    answered: collections.Counter[str] = field(default_factory=collections.Counter)
    valid_failed: list[tuple[str, str, str, str]] = field(default_factory=list)
    wrong_answers: list[tuple[str, str]] = field(default_factory=list)
    malformed_answered: list[tuple[str, str]] = field(default_factory=list)
    error_codes: dict[str, collections.Counter[str]] = field(default_factory=dict)
    retried: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Requests sent."""
        return sum(self.sent.values())


def run_cases(
    url: str,
    cases: Sequence[FuzzCase],
    references: dict[str, Arrays],
    *,
    concurrency: int = 8,
    timeout_s: float = 60.0,
    retries: int = 3,
    progress: Callable[[int], None] | None = None,
) -> FuzzReport:
    """Send `cases` from `concurrency` threads (one gRPC channel each) and check every outcome against its case.

    UNAVAILABLE is retried up to `retries` times, as tritonforge's client does: the configs' queue policy sheds a
    request that waited over its timeout (1 s by default) on purpose, and on two busy cores that happens.
    """
    work: queue.SimpleQueue[FuzzCase] = queue.SimpleQueue()
    for case in cases:
        work.put(case)
    report = FuzzReport()
    lock = threading.Lock()
    done = [0]

    def record(case: FuzzCase, outputs: Arrays | None, error: grpc.RpcError | None) -> None:
        with lock:
            report.sent[case.kind] += 1
            if error is not None:
                report.errors[case.kind] += 1
                report.error_codes.setdefault(case.kind, collections.Counter())[error.code().name] += 1
                if case.expect == "answer":
                    report.valid_failed.append((case.kind, case.model, error.code().name, error.details() or ""))
            else:
                report.answered[case.kind] += 1
                if case.expect == "error":
                    report.malformed_answered.append((case.kind, case.model))
                elif case.expect == "answer" and not answers_match(outputs or {}, references[case.answer_key or ""]):
                    report.wrong_answers.append((case.kind, case.model))
            done[0] += 1
            if progress is not None:
                progress(done[0])

    def worker() -> None:
        with grpc.insecure_channel(url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while True:
                try:
                    case = work.get_nowait()
                except queue.Empty:
                    return
                for attempt in range(retries + 1):
                    try:
                        outputs = decode_outputs(stub.ModelInfer(case.request, timeout=timeout_s))
                    except grpc.RpcError as exc:
                        if exc.code() == grpc.StatusCode.UNAVAILABLE and attempt < retries:
                            with lock:
                                report.retried[case.kind] += 1
                            time.sleep(0.05 * (attempt + 1))
                            continue
                        record(case, None, exc)
                    else:
                        record(case, outputs, None)
                    break

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"fuzz-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.perf_counter() - started
    return report


def served_config(url: str, model: str, *, timeout_s: float = 30.0) -> model_config_pb2.ModelConfig:
    """The config the server runs a model with (ModelConfig over gRPC)."""
    with grpc.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelConfig(service_pb2.ModelConfigRequest(name=model), timeout=timeout_s)
    config: model_config_pb2.ModelConfig = response.config
    return config


def example_samples(config: model_config_pb2.ModelConfig, *, count: int = 12, seed: int = 0) -> list[Arrays] | None:
    """Valid sample requests for one of the example models, told apart by its input names; None for other models.

    digits (image FP32 [n, 1, 8, 8]): held-out digits; a text encoder (input_ids, attention_mask): tokenized sentences;
    the tokenizer or a text ensemble (TEXT BYTES [n, 1]): sentences, one empty and one not ASCII among them.
    """
    names = sorted(i.name for i in config.input)
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(1, 4)) for _ in range(count)]
    if names == ["image"]:
        from tritonforge.examples.digits import load_split

        images = load_split().x_test
        starts = rng.integers(0, len(images) - 8, size=count)
        return [{"image": images[s : s + n * 2 - 1]} for s, n in zip(starts, sizes, strict=True)]
    from tritonforge.examples.text_corpus import evaluation_sentences

    sentences = evaluation_sentences(n=sum(sizes), seed=seed)
    sentences[0], sentences[-1] = "", "Grüße aus Köln, naïve café — 東京"
    groups = np.split(np.array(sentences, dtype=object), np.cumsum(sizes)[:-1])
    if names == ["attention_mask", "input_ids"]:
        from tritonforge.examples import minilm

        return [minilm.tokenize(list(group)) for group in groups]
    if names == ["TEXT"]:
        return [{"TEXT": np.array([s.encode() for s in group], dtype=object).reshape(-1, 1)} for group in groups]
    return None


def example_targets(url: str, models: Sequence[str], *, count: int = 12, seed: int = 0) -> list[ModelTarget]:
    """Targets for the served example models among `models` (configs as served), with their valid samples."""
    targets = []
    for model in models:
        config = served_config(url, model)
        samples = example_samples(config, count=count, seed=seed)
        if samples is not None:
            index_inputs = [i.name for i in config.input if i.name == "input_ids"]
            targets.append(ModelTarget.from_config(config, samples, index_inputs))
    return targets
