"""The parity gate: ONNX Runtime must reproduce torch's outputs at batch 1 and at a larger batch.

    report = check_parity(model=model, onnx_path=Path("build/digits.onnx"), inputs=specs)  # raises ParityError
    for row in report.results:
        print(row.output, row.batch_size, row.max_abs_err, row.max_rel_err)

By default the inputs are random (specs.sample_inputs, dynamic sizes 3). A model whose inputs have rules random data
breaks (a BERT attention mask holds only 0 and 1; token ids must be real) passes `sample`, a function of the batch
size that returns real inputs: real data also exercises sizes the trace did not see (sequence lengths), so a size
baked into the graph shows up as a failure here.

An element passes when |onnx - torch| <= atol + rtol * |torch| (numpy.isclose). Running more than one batch size is
what exposes a batch size baked into the graph: the export traces one batch size, and a constant taken from it (a
Reshape to [2, -1], say) breaks every other size, either as an ONNX Runtime shape error or as wrong outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tritonforge.converters.specs import TensorSpec, sample_inputs
from tritonforge.converters.torch2onnx import BAKED_BATCH_HINT, flatten_outputs
from tritonforge.errors import ConfigError, ConversionError, ParityError

if TYPE_CHECKING:
    import torch

_LOGGER = logging.getLogger(__name__)

SampleFn = Callable[[int], Mapping[str, npt.NDArray[Any]]]
"""Returns real model inputs for a batch size: one array per input name, batch axis first."""


@dataclass(frozen=True, kw_only=True)
class ParityResult:
    """How one output compared at one batch size."""

    output: str
    batch_size: int
    max_abs_err: float
    max_rel_err: float
    passed: bool


@dataclass(frozen=True, kw_only=True)
class ParityReport:
    """Every (output, batch size) comparison of one gate run, with the tolerances used."""

    results: tuple[ParityResult, ...]
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        """Whether every comparison was within tolerance."""
        return bool(self.results) and all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data (for the version manifest)."""
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "passed": self.passed,
            "results": [
                {
                    "output": r.output,
                    "batch_size": r.batch_size,
                    "max_abs_err": r.max_abs_err,
                    "max_rel_err": r.max_rel_err,
                    "passed": r.passed,
                }
                for r in self.results
            ],
        }


@dataclass(frozen=True, kw_only=True)
class _Failure:
    batch_size: int
    what: str
    batch_related: bool


def _compare(
    name: str, batch_size: int, got: npt.NDArray[Any], want: npt.NDArray[Any], atol: float, rtol: float
) -> ParityResult:
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(got64) & np.isnan(want64)
    abs_err = np.where(both_nan, 0.0, np.abs(got64 - want64))
    abs_err = np.where(np.isnan(abs_err), np.inf, abs_err)
    rel_err = abs_err / np.maximum(np.abs(want64), np.finfo(np.float64).tiny)
    passed = bool(np.all(abs_err <= atol + rtol * np.abs(want64)))
    return ParityResult(
        output=name,
        batch_size=batch_size,
        max_abs_err=float(abs_err.max(initial=0.0)),
        max_rel_err=float(np.where(abs_err == 0, 0.0, rel_err).max(initial=0.0)),
        passed=passed,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:240]


def _session(onnx_path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # ORT would print each failing run in red; the gate reports it in its message
    try:
        return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's pybind errors (Fail, InvalidGraph, NotImplemented...) share no base but Exception
        raise ConversionError(f"ONNX Runtime cannot load {onnx_path}: {_one_line(exc)}") from exc


def sampled_feeds(sample: SampleFn, inputs: Sequence[TensorSpec], batch_size: int) -> dict[str, npt.NDArray[Any]]:
    """Call `sample(batch_size)` and check it gives one array per input, with that batch size and the spec's dtype.

    Raises:
        ConfigError: the sample misses or adds inputs, or an array has the wrong batch size or dtype.
    """
    feeds = {name: np.asarray(array) for name, array in sample(batch_size).items()}
    names = [spec.name for spec in inputs]
    if sorted(feeds) != sorted(names):
        raise ConfigError(f"sample({batch_size}) returned inputs {sorted(feeds)}; the model's inputs are {names}")
    for spec in inputs:
        array = feeds[spec.name]
        if array.ndim != len(spec.shape) + 1 or array.shape[0] != batch_size or array.dtype != np.dtype(spec.dtype):
            raise ConfigError(
                f"sample({batch_size}) input '{spec.name}' is {array.dtype} {list(array.shape)}; it must be "
                f"{spec.dtype} with {len(spec.shape) + 1} axes and batch size {batch_size} first"
            )
    return {spec.name: feeds[spec.name] for spec in inputs}


def _run_batch(
    model: torch.nn.Module,
    session: Any,
    inputs: Sequence[TensorSpec],
    batch_size: int,
    seed: int,
    sample: SampleFn | None,
) -> tuple[list[npt.NDArray[Any]] | None, list[npt.NDArray[Any]] | None, _Failure | None]:
    import torch

    if sample is not None:
        feeds = sampled_feeds(sample, inputs, batch_size)
    else:
        feeds = sample_inputs(inputs, batch_size=batch_size, seed=seed + batch_size)
    try:
        with torch.no_grad():
            _, tensors = flatten_outputs(model(*(torch.from_numpy(feeds[s.name]) for s in inputs)))
    except (RuntimeError, ValueError, IndexError) as exc:
        what = f"the torch model itself fails at batch {batch_size} ({_one_line(exc)}); it must accept any batch size"
        return None, None, _Failure(batch_size=batch_size, what=what, batch_related=False)
    want = [t.detach().cpu().numpy() for t in tensors]
    try:
        got = session.run(None, feeds)
    except Exception as exc:  # ORT's pybind errors share no base but Exception
        what = f"ONNX Runtime fails at batch {batch_size}: {_one_line(exc)}"
        return want, None, _Failure(batch_size=batch_size, what=what, batch_related=True)
    return want, got, None


def _check_batch(
    names: list[str],
    want: list[npt.NDArray[Any]],
    got: list[npt.NDArray[Any]],
    batch_size: int,
    atol: float,
    rtol: float,
) -> tuple[list[ParityResult], list[_Failure]]:
    results, failures = [], []
    if len(want) != len(got):
        what = f"torch returns {len(want)} outputs but the ONNX graph has {len(got)}"
        return [], [_Failure(batch_size=batch_size, what=what, batch_related=False)]
    for name, w, g in zip(names, want, got, strict=True):
        if w.shape[:1] != (batch_size,):
            what = f"torch output '{name}' at batch {batch_size} has shape {w.shape}; the batch axis must come first"
            failures.append(_Failure(batch_size=batch_size, what=what, batch_related=True))
            continue
        if w.shape != g.shape:
            batch_related = w.shape[:1] != g.shape[:1]
            what = f"output '{name}' at batch {batch_size}: ONNX shape {g.shape} != torch shape {w.shape}"
            failures.append(_Failure(batch_size=batch_size, what=what, batch_related=batch_related))
            continue
        results.append(_compare(name, batch_size, g, w, atol, rtol))
    return results, failures


def check_parity(
    *,
    model: torch.nn.Module,
    onnx_path: Path,
    inputs: Sequence[TensorSpec],
    batch_sizes: Sequence[int] = (1, 8),
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    sample: SampleFn | None = None,
) -> ParityReport:
    """Compare ONNX Runtime's outputs with torch's on the same inputs (random, or `sample`'s), at each batch size.

    Args:
        model: the source module (switched to eval mode).
        onnx_path: its ONNX export.
        inputs: the model's inputs, shapes without the batch axis.
        batch_sizes: batch sizes to compare at; include 1 and a larger one to catch a baked-in batch size.
        atol: absolute tolerance per element.
        rtol: relative tolerance per element (relative to torch's value).
        seed: seeds the random inputs (each batch size adds its own offset).
        sample: returns real inputs for a batch size (see SampleFn); None draws random ones from the specs.

    Returns:
        The report, every comparison within tolerance.

    Raises:
        ConfigError: bad batch sizes or tolerances, or `sample` returned arrays that do not fit the specs.
        ConversionError: ONNX Runtime cannot load the file.
        ParityError: an output differs beyond tolerance, or a batch size fails; the message has the numbers and,
            when only some batch sizes fail, says the batch size looks baked into the graph and how to fix it.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"batch_sizes {list(batch_sizes)} must be a non-empty list of sizes >= 1")
    if atol < 0 or rtol < 0:
        raise ConfigError(f"tolerances atol={atol}, rtol={rtol} must be >= 0")
    model.eval()
    session = _session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    results: list[ParityResult] = []
    failures: list[_Failure] = []
    for batch_size in sorted(set(batch_sizes)):
        want, got, failure = _run_batch(model, session, inputs, batch_size, seed, sample)
        if failure is not None:
            failures.append(failure)
            continue
        assert want is not None and got is not None
        batch_results, batch_failures = _check_batch(names, want, got, batch_size, atol, rtol)
        results.extend(batch_results)
        failures.extend(batch_failures)
    report = ParityReport(results=tuple(results), atol=atol, rtol=rtol)
    if failures or not report.passed:
        raise ParityError(_failure_message(onnx_path, report, failures))
    _LOGGER.info("parity gate passed for %s at batch sizes %s", onnx_path.name, sorted(set(batch_sizes)))
    return report


def _failure_message(onnx_path: Path, report: ParityReport, failures: list[_Failure]) -> str:
    over = [r for r in report.results if not r.passed]
    parts = [f.what for f in failures] + [
        f"output '{r.output}' at batch {r.batch_size}: max abs err {r.max_abs_err:.3g} (atol {report.atol:g}), "
        f"max rel err {r.max_rel_err:.3g} (rtol {report.rtol:g})"
        for r in over
    ]
    failed_batches = {f.batch_size for f in failures} | {r.batch_size for r in over}
    passed_batches = sorted({r.batch_size for r in report.results} - failed_batches)
    baked = any(f.batch_related for f in failures) or (passed_batches and failed_batches)
    message = f"parity gate failed for {onnx_path.name}: " + "; ".join(parts)
    if baked:
        passed = f"passes at batch {passed_batches}, " if passed_batches else ""
        message += f"; {passed}fails at batch {sorted(failed_batches)}: {BAKED_BATCH_HINT}"
    return message
