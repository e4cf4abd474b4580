"""The parity gate: ONNX Runtime must reproduce torch's outputs at batch 1 and > 1, at every size of every axis.

    report = check_parity(model=model, onnx_path=Path("build/digits.onnx"), inputs=specs)  # raises ParityError
    for row in report.results:
        print(row.output, row.batch_size, dict(row.axes), row.max_abs_err, row.max_rel_err)

Each dynamic axis is tried at each of its sizes (specs.axis_plan: by default 1, the typical size the model was
traced at, and a large one >= 32), the other axes at their typical size, each at batch 1 and at the larger batch.
A size baked into the graph (a Python int taken from `x.shape[1]` during tracing) passes at the typical size and
fails at the others, and the message names the axis. The inputs are random (specs.sample_inputs) unless `sample`,
a function of the batch size that returns real inputs, is given: the sample is compared at its own sizes, and the
other sizes are generated with the integer value ranges the sample shows (a BERT attention mask stays 0..1).

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

from tritonforge.converters.binding import bind_by_name
from tritonforge.converters.specs import DYNAMIC_DIM, TensorSpec, axis_plan, axis_users, sample_inputs
from tritonforge.converters.torch2onnx import BAKED_BATCH_HINT, EXAMPLE_BATCH_SIZE, looks_like_values, value_hint
from tritonforge.errors import ConfigError, ConversionError, ParityError

if TYPE_CHECKING:
    import torch

_LOGGER = logging.getLogger(__name__)

_MAX_PARTS = 3
"""Failures named in the one-line message; the rest are counted."""

SampleFn = Callable[[int], Mapping[str, npt.NDArray[Any]]]
"""Returns real model inputs for a batch size: one array per input name, batch axis first."""


@dataclass(frozen=True, kw_only=True)
class ParityResult:
    """How one output compared at one batch size and one size of each dynamic axis."""

    output: str
    batch_size: int
    max_abs_err: float
    max_rel_err: float
    passed: bool
    axes: tuple[tuple[str, int], ...] = ()
    """The size of each dynamic axis in this comparison, e.g. (("seq", 33),)."""


@dataclass(frozen=True, kw_only=True)
class ParityReport:
    """Every (output, batch size, axis sizes) comparison of one gate run, with the tolerances and sizes used."""

    results: tuple[ParityResult, ...]
    atol: float
    rtol: float
    axis_sizes: tuple[tuple[str, tuple[int, ...], int], ...] = ()
    """Per dynamic axis: (name, sizes tried, typical size the model was traced at)."""
    inputs: str = "random (specs.sample_inputs)"
    """Where the compared inputs came from."""

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
            "inputs": self.inputs,
            "axes": {name: {"sizes": list(sizes), "typical": typical} for name, sizes, typical in self.axis_sizes},
            "results": [
                {
                    "output": r.output,
                    "batch_size": r.batch_size,
                    "axes": dict(r.axes),
                    "max_abs_err": r.max_abs_err,
                    "max_rel_err": r.max_rel_err,
                    "passed": r.passed,
                }
                for r in self.results
            ],
        }


@dataclass(frozen=True, kw_only=True)
class _Case:
    batch_size: int
    axes: tuple[tuple[str, int], ...]
    feeds: dict[str, npt.NDArray[Any]]
    generated: bool
    baseline: bool = False
    """Every axis at its typical size (or the sample's own): what the other cases at this batch are judged against."""

    @property
    def key(self) -> tuple[int, tuple[tuple[str, int], ...]]:
        return self.batch_size, self.axes

    @property
    def label(self) -> str:
        return _label(self.batch_size, self.axes)


def _label(batch_size: int, axes: tuple[tuple[str, int], ...]) -> str:
    return ", ".join([f"batch {batch_size}", *(f"{a} {s}" for a, s in axes)])


@dataclass(frozen=True, kw_only=True)
class _Failure:
    case: _Case
    what: str
    batch_related: bool
    in_torch: bool = False
    hint: str | None = None
    """What to do about it, said once in the message however many cases share it."""


def _compare(
    name: str, case: _Case, got: npt.NDArray[Any], want: npt.NDArray[Any], atol: float, rtol: float
) -> ParityResult:
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(got64) & np.isnan(want64)
    abs_err = np.where(both_nan, 0.0, np.abs(got64 - want64))
    abs_err = np.where(np.isnan(abs_err), np.inf, abs_err)
    rel_err = abs_err / np.maximum(np.abs(want64), np.finfo(np.float64).tiny)
    passed = bool(np.all(abs_err <= atol + rtol * np.abs(want64)))
    return ParityResult(
        output=name,
        batch_size=case.batch_size,
        max_abs_err=float(abs_err.max(initial=0.0)),
        max_rel_err=float(np.where(abs_err == 0, 0.0, rel_err).max(initial=0.0)),
        passed=passed,
        axes=case.axes,
    )


def _one_line(exc: BaseException, limit: int = 240) -> str:
    return " ".join(str(exc).split())[:limit]


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
        ConfigError: the sample misses or adds inputs, or an array has the wrong batch size, dtype or static size.
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
        fixed = [(i + 1, d) for i, d in enumerate(spec.shape) if d != DYNAMIC_DIM and array.shape[i + 1] != d]
        if fixed:
            raise ConfigError(
                f"sample({batch_size}) input '{spec.name}' has size {array.shape[fixed[0][0]]} at dim {fixed[0][0]}; "
                f"the spec fixes it at {fixed[0][1]} (shape {list(spec.shape)} after the batch axis)"
            )
    feed_axes(inputs, feeds)  # a shared axis must have one size
    return {spec.name: feeds[spec.name] for spec in inputs}


def feed_axes(inputs: Sequence[TensorSpec], feeds: Mapping[str, npt.NDArray[Any]]) -> dict[str, int]:
    """The size of each dynamic axis in a set of arrays (batch axis first).

    Raises:
        ConfigError: inputs that share a named axis have different sizes along it.
    """
    sizes: dict[str, int] = {}
    for spec in inputs:
        for i, axis in enumerate(spec.dim_axes()):
            if axis is None:
                continue
            size = int(feeds[spec.name].shape[i + 1])
            if sizes.setdefault(axis, size) != size:
                raise ConfigError(
                    f"input '{spec.name}' has {size} along axis '{axis}' but {axis_users(inputs, axis)} share it at "
                    f"{sizes[axis]}: inputs that share an axis need the same size along it"
                )
    return sizes


def value_ranges_of(inputs: Sequence[TensorSpec], feeds: Mapping[str, npt.NDArray[Any]]) -> dict[str, tuple[int, int]]:
    """min..max of each integer input in real inputs: the range generated inputs keep when the spec gives none."""
    return {
        s.name: (int(feeds[s.name].min()), int(feeds[s.name].max()))
        for s in inputs
        if np.dtype(s.dtype).kind in "iu" and feeds[s.name].size
    }


def gate_axes(
    inputs: Sequence[TensorSpec],
    axis_sizes: Mapping[str, Sequence[int]] | None = None,
    sample: SampleFn | None = None,
) -> dict[str, tuple[tuple[int, ...], int]]:
    """The sizes the gate tries per dynamic axis and the typical (trace) one: the sample's size when there is one.

    Returns:
        {axis: (sizes, typical)}; see specs.axis_plan.

    Raises:
        ConfigError: see specs.axis_plan and `sampled_feeds`.
    """
    plan = axis_plan(inputs, axis_sizes, reserved=(EXAMPLE_BATCH_SIZE,))
    if sample is None or not plan:
        return plan
    traced = feed_axes(inputs, sampled_feeds(sample, inputs, EXAMPLE_BATCH_SIZE))
    adjusted = {}
    for axis, (sizes, typical) in plan.items():
        size = traced[axis]
        if axis_sizes and axis in axis_sizes:
            adjusted[axis] = (tuple(sorted({*sizes, size})), size)
        else:  # the sample's size replaces the default typical one
            adjusted[axis] = (tuple(sorted({s for s in sizes if s != typical} | {size})), size)
    return adjusted


def _cases(
    inputs: Sequence[TensorSpec],
    batch_sizes: Sequence[int],
    plan: Mapping[str, tuple[tuple[int, ...], int]],
    *,
    seed: int,
    sample: SampleFn | None,
) -> list[_Case]:
    typical = {axis: t for axis, (_, t) in plan.items()}
    cases: list[_Case] = []
    ranges: dict[str, tuple[int, int]] = {}
    for batch in batch_sizes:
        if sample is not None:
            feeds = sampled_feeds(sample, inputs, batch)
            for name, (lo, hi) in value_ranges_of(inputs, feeds).items():
                old = ranges.get(name, (lo, hi))
                ranges[name] = (min(lo, old[0]), max(hi, old[1]))
        else:
            feeds = sample_inputs(inputs, batch_size=batch, seed=seed + batch, axis_sizes=typical)
        measured = tuple(feed_axes(inputs, feeds).items())
        cases.append(_Case(batch_size=batch, axes=measured, feeds=feeds, generated=sample is None, baseline=True))
    seen = {case.key for case in cases}
    for axis, (sizes, t) in plan.items():
        for size in sizes:
            for batch in batch_sizes:
                axes = {**typical, axis: size}
                key = (batch, tuple(axes.items()))
                if size == t and sample is None or key in seen:
                    continue
                seen.add(key)
                feeds = sample_inputs(
                    inputs, batch_size=batch, seed=seed + batch + size, axis_sizes=axes, value_ranges=ranges
                )
                cases.append(_Case(batch_size=batch, axes=key[1], feeds=feeds, generated=True))
    return cases


def _run_case(
    bound: torch.nn.Module, session: Any, inputs: Sequence[TensorSpec], case: _Case
) -> tuple[list[npt.NDArray[Any]] | None, list[npt.NDArray[Any]] | None, _Failure | None]:
    import torch

    try:
        with torch.no_grad():
            tensors = bound(*(torch.from_numpy(case.feeds[s.name]) for s in inputs))
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        return None, None, _torch_failure(bound, inputs, case, exc)
    want = [t.detach().cpu().numpy() for t in tensors]
    try:
        got = session.run(None, case.feeds)
    except Exception as exc:  # ORT's pybind errors share no base but Exception
        what = f"ONNX Runtime fails at {case.label}: {_one_line(exc, 160)}"
        return want, None, _Failure(case=case, what=what, batch_related=True)
    return want, got, None


def _unshared_axes(bound: torch.nn.Module, inputs: Sequence[TensorSpec], case: _Case) -> bool:
    """Whether the model fails with its axes at different sizes but runs with them all at one size."""
    sizes = dict(case.axes)
    if len(set(sizes.values())) < 2:
        return False
    same = dict.fromkeys(sizes, max(sizes.values()))
    ranges = value_ranges_of(inputs, case.feeds)
    feeds = sample_inputs(inputs, batch_size=case.batch_size, axis_sizes=same, value_ranges=ranges)
    return _torch_runs(bound, inputs, feeds)


def _torch_runs(bound: torch.nn.Module, inputs: Sequence[TensorSpec], feeds: Mapping[str, npt.NDArray[Any]]) -> bool:
    import torch

    try:
        with torch.no_grad():
            bound(*(torch.from_numpy(feeds[s.name]) for s in inputs))
    except (RuntimeError, ValueError, IndexError, TypeError):
        return False
    return True


def _torch_failure(bound: torch.nn.Module, inputs: Sequence[TensorSpec], case: _Case, exc: Exception) -> _Failure:
    reason = _one_line(exc, 160)
    # Off the typical sizes, an index error is as likely the size (a position table too short) as the values: the
    # values are blamed there only when zeroing them makes the model run.
    clue = reason if case.baseline else ""
    blamed = looks_like_values(bound, inputs, case.feeds, clue) if case.generated else []
    what = f"the torch model itself fails at {case.label} ({reason})"
    if blamed:
        what = f"the torch model fails on the generated values of {blamed} at {case.label} ({reason})"
        hint = f"it is the values, not the shapes: {value_hint(inputs, blamed)}"
    elif case.generated and _unshared_axes(bound, inputs, case):
        spelled = ", ".join(f"{s.name}:{s.shape_text()}" for s in inputs if not s.is_static)
        hint = (
            f"the model needs the dynamic axes {[a for a, _ in case.axes]} to have one size: inputs that share an "
            f"axis need one axis name in place of -1 (e.g. seq), not {spelled}"
        )
    elif case.axes:
        axes = " ".join(f"--axis {a}=S1,S2,S3" for a, _ in case.axes)
        hint = f"if the model only accepts some sizes, choose the sizes to check with {axes}"
    else:
        hint = "the model must accept any batch size"
    return _Failure(case=case, what=what, batch_related=False, in_torch=True, hint=hint)


def _check_case(
    names: list[str],
    want: list[npt.NDArray[Any]],
    got: list[npt.NDArray[Any]],
    case: _Case,
    atol: float,
    rtol: float,
) -> tuple[list[ParityResult], list[_Failure]]:
    results, failures = [], []
    if len(want) != len(got):
        what = f"torch returns {len(want)} outputs but the ONNX graph has {len(got)}"
        return [], [_Failure(case=case, what=what, batch_related=False)]
    for name, w, g in zip(names, want, got, strict=True):
        if w.shape[:1] != (case.batch_size,):
            what = f"torch output '{name}' at {case.label} has shape {w.shape}; the batch axis must come first"
            failures.append(_Failure(case=case, what=what, batch_related=True))
            continue
        if w.shape != g.shape:
            batch_related = w.shape[:1] != g.shape[:1]
            what = f"output '{name}' at {case.label}: ONNX shape {g.shape} != torch shape {w.shape}"
            failures.append(_Failure(case=case, what=what, batch_related=batch_related))
            continue
        results.append(_compare(name, case, g, w, atol, rtol))
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
    axis_sizes: Mapping[str, Sequence[int]] | None = None,
) -> ParityReport:
    """Compare ONNX Runtime's outputs with torch's on the same inputs, at each batch size and each axis size.

    Torch gets the inputs by name (binding.bind_by_name), ONNX Runtime by name too, so the comparison cannot pass
    with inputs swapped.

    Args:
        model: the source module (switched to eval mode).
        onnx_path: its ONNX export.
        inputs: the model's inputs, shapes without the batch axis.
        batch_sizes: batch sizes to compare at; include 1 and a larger one to catch a baked-in batch size.
        atol: absolute tolerance per element.
        rtol: relative tolerance per element (relative to torch's value).
        seed: seeds the random inputs (each case adds its own offset).
        sample: returns real inputs for a batch size (see SampleFn); None draws random ones from the specs.
        axis_sizes: sizes to try per dynamic axis (e.g. {"seq": (1, 16, 64)}); default: specs.default_axis_sizes.

    Returns:
        The report, every comparison within tolerance.

    Raises:
        ConfigError: bad batch sizes, tolerances or axis sizes, or `sample` returned arrays that do not fit the specs.
        ConversionError: ONNX Runtime cannot load the file.
        ParityError: an output differs beyond tolerance, or a case fails; the message has the numbers and, when only
            some sizes fail, names the batch or the axis that looks baked into the graph and how to fix it.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"batch_sizes {list(batch_sizes)} must be a non-empty list of sizes >= 1")
    if atol < 0 or rtol < 0:
        raise ConfigError(f"tolerances atol={atol}, rtol={rtol} must be >= 0")
    model.eval()
    bound = bind_by_name(model, [spec.name for spec in inputs])
    plan = gate_axes(inputs, axis_sizes, sample)
    session = _session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    results: list[ParityResult] = []
    failures: list[_Failure] = []
    cases = _cases(inputs, sorted(set(batch_sizes)), plan, seed=seed, sample=sample)
    for case in cases:
        want, got, failure = _run_case(bound, session, inputs, case)
        if failure is not None:
            failures.append(failure)
            continue
        assert want is not None and got is not None
        case_results, case_failures = _check_case(names, want, got, case, atol, rtol)
        results.extend(case_results)
        failures.extend(case_failures)
    report = ParityReport(
        results=tuple(results),
        atol=atol,
        rtol=rtol,
        axis_sizes=tuple((axis, sizes, typical) for axis, (sizes, typical) in plan.items()),
        inputs="caller's sample(), generated at other axis sizes"
        if sample is not None
        else "random (specs.sample_inputs)",
    )
    if failures or not report.passed:
        raise ParityError(_failure_message(onnx_path, inputs, report, cases, failures, plan))
    _LOGGER.info("parity gate passed for %s in %d cases", onnx_path.name, len(cases))
    return report


def _baked_axes(
    inputs: Sequence[TensorSpec],
    cases: list[_Case],
    failed: set[tuple[int, tuple[tuple[str, int], ...]]],
    torch_failed: set[tuple[int, tuple[tuple[str, int], ...]]],
    plan: Mapping[str, tuple[tuple[int, ...], int]],
) -> list[str]:
    """Name each axis whose non-typical sizes fail while the typical size passes at the same batch."""
    baseline = {case.batch_size: case.key for case in cases if case.baseline}
    hints = []
    for axis, (_, typical) in plan.items():
        fails_at = set()
        for case in cases:
            size = dict(case.axes).get(axis, typical)
            if case.baseline or size == typical or case.key not in failed - torch_failed:
                continue
            if baseline.get(case.batch_size) not in failed:  # the same batch passes at the typical sizes
                fails_at.add(size)
        if fails_at:
            dim = next(i + 1 for s in inputs for i, a in enumerate(s.dim_axes()) if a == axis)
            hints.append(
                f"axis '{axis}' looks baked into the graph: passes at {typical}, fails at {sorted(fails_at)}: in "
                f"forward() use x.size({dim}) or reshape(-1, ...) instead of int(x.shape[{dim}]) or a constant"
            )
    return hints


def _failure_message(
    onnx_path: Path,
    inputs: Sequence[TensorSpec],
    report: ParityReport,
    cases: list[_Case],
    failures: list[_Failure],
    plan: Mapping[str, tuple[tuple[int, ...], int]],
) -> str:
    over = [r for r in report.results if not r.passed]
    parts = [f.what for f in failures] + [
        f"output '{r.output}' at {_label(r.batch_size, r.axes)}: max abs err {r.max_abs_err:.3g} "
        f"(atol {report.atol:g}), max rel err {r.max_rel_err:.3g} (rtol {report.rtol:g})"
        for r in over
    ]
    if len(parts) > _MAX_PARTS:
        parts = [*parts[:_MAX_PARTS], f"... {len(parts) - _MAX_PARTS} more failing comparisons"]
    failed = {f.case.key for f in failures} | {(r.batch_size, r.axes) for r in over}
    torch_failed = {f.case.key for f in failures if f.in_torch}
    hints = []
    # The batch: compare the cases where every axis is at its typical size.
    typical_cases = [c for c in cases if c.baseline]
    failed_batches = sorted({c.batch_size for c in typical_cases if c.key in failed - torch_failed})
    passed_batches = sorted({c.batch_size for c in typical_cases if c.key not in failed})
    batch_baked = any(f.batch_related and f.case.baseline for f in failures) or (passed_batches and failed_batches)
    if batch_baked and failed_batches:
        passed = f"passes at batch {passed_batches}, " if passed_batches else ""
        hints.append(f"{passed}fails at batch {failed_batches}: {BAKED_BATCH_HINT}")
    hints += _baked_axes(inputs, cases, failed, torch_failed, plan)
    hints += list(dict.fromkeys(f.hint for f in failures if f.hint))
    # The diagnosis first, then the evidence: a reader of one long line sees what to change before the numbers.
    return f"parity gate failed for {onnx_path.name}: " + "; ".join([*hints, *parts])
