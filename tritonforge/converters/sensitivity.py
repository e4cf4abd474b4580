"""Accuracy-aware quantization: measure which nodes cost the metric, and leave the worst in float until the gate passes.

    result = search_exclusions(model=preprocessed, settings=QuantSettings(method=QuantMethod.INT8_DYNAMIC),
                               eval_set=eval_set, reference=fp32_outputs, spec=GateSpec(metric=GateMetric.COSINE),
                               workdir=tmp, sensitivity_items=128)
    if result.passed:
        print(result.settings.exclude_nodes, [c.tolerance_used for c in result.excluded])

How: each candidate (a node, or every quantized node of one layer) is quantized ALONE and gated against FP32 on a
subset of the evaluation set; its cost is how much of the gate's tolerance that alone uses (`tolerance_used`, ties
broken by the output's cosine to FP32, so a classifier whose accuracy does not move still gets an order). Quantizing
one node alone isolates its own error, where excluding one node from a fully quantized model mostly measures the
noise of all the others. Then the k most costly candidates are excluded, k growing 1, 2, 4... until the gate passes
on the whole evaluation set, and bisection finds the smallest passing k: the fewest float nodes, so the fastest
passing variant. The number of quantize-and-gate tries is bounded.

Per-node is the default, measured on all-MiniLM-L6-v2 with plain dynamic INT8 (cosine mean 0.966, min 0.926 on 500
sentences; costs on 128): per-node measured 38 candidates and kept 4 MatMuls in float (the FFN output projections of
layers 0-3, whose inputs are GELU outputs with large outliers) to pass at mean 0.993 / min 0.987, in 70-90 s on two
shared cores; per-layer measured 8 candidates in 33 s but had to keep 3 whole layers (18 MatMuls) in float, and its
variant ran at 1.29x FP32 against per-node's 1.64x (batch 16). Fewer float nodes is what makes the variant fast.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy.typing as npt

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.quality_gate import GateResult, GateSpec, evaluate_gate, run_model
from tritonforge.converters.quantize import QuantMethod, QuantSettings, quantize_model, quantized_nodes
from tritonforge.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_TRIES = 8
_INDEXED_PART = re.compile(r"^(?:\d+|.*[._]\d+)$")  # "0" (nn.Sequential), "layer.3", "layers_11", "h.5"


class Granularity(str, Enum):
    """What one sensitivity candidate is."""

    NODE = "node"
    """Each quantized node on its own: precise exclusions, one measurement per node."""
    LAYER = "layer"
    """All quantized nodes of one layer (see `layer_of`): fewer measurements, coarser exclusions."""


def layer_of(node_name: str) -> str:
    """Return the layer a node belongs to, from the module path torch.onnx writes into node names.

    The path up to its first indexed part ("/encoder/layer.0/attention/self/query/MatMul" -> "/encoder/layer.0",
    "/0/Conv" -> "/0"); a node outside any indexed module belongs to its parent module
    ("/embeddings/word_embeddings/Gather" -> "/embeddings/word_embeddings"); a name without a path is its own layer.
    """
    parts = node_name.split("/")
    for index, part in enumerate(parts):
        if part and _INDEXED_PART.match(part):
            return "/".join(parts[: index + 1])
    parent = "/".join(parts[:-1])
    return parent or node_name


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One measured candidate for exclusion and what quantizing it alone cost.

    Attributes:
        name: the node name, or the layer's path.
        nodes: the node names it covers (one for NODE granularity).
        tolerance_used: the share of the gate's tolerance used when only these nodes are quantized.
        gate: the gate's figures for that model on the sensitivity subset.
    """

    name: str
    nodes: tuple[str, ...]
    tolerance_used: float
    gate: GateResult

    def to_dict(self) -> dict[str, Any]:
        """Return the candidate for a manifest: name, nodes, cost and the deciding figures."""
        figures = self.gate.to_dict()
        return {
            "name": self.name,
            "nodes": list(self.nodes),
            "tolerance_used": figures["tolerance_used"],
            "cosine_mean": figures["cosine_mean"],
            "cosine_min": figures["cosine_min"],
            "max_abs_error": figures["max_abs_error"],
            "drop_points": figures["drop_points"],
        }


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One quantize-and-gate try of the search: how many candidates were excluded and what the gate said."""

    excluded_candidates: int
    excluded_nodes: int
    gate: GateResult

    def to_dict(self) -> dict[str, Any]:
        """Return the try for a manifest."""
        return {
            "excluded_candidates": self.excluded_candidates,
            "excluded_nodes": self.excluded_nodes,
            "passed": self.gate.passed,
            "summary": self.gate.summary(),
        }


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """What the accuracy-aware search found.

    Attributes:
        passed: whether a passing variant was found within the tries.
        settings: the passing settings (the given ones plus exclusions), or the last tried when none passed.
        gate: the gate's figures of that variant on the whole evaluation set.
        model_path: the variant's file (inside the search's workdir).
        excluded: the excluded candidates, most costly first, with what each cost.
        candidates: every measured candidate, most costly first.
        attempts: every quantize-and-gate try, in order.
        granularity: node or layer.
        sensitivity_items: how many evaluation items the costs were measured on.
        seconds: wall time of the whole search.
    """

    passed: bool
    settings: QuantSettings
    gate: GateResult
    model_path: Path
    excluded: tuple[Candidate, ...]
    candidates: tuple[Candidate, ...]
    attempts: tuple[Attempt, ...]
    granularity: Granularity
    sensitivity_items: int
    seconds: float = field(default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """Return the search for a manifest (exclusions and their costs, every candidate's cost, the tries)."""
        return {
            "passed": self.passed,
            "granularity": self.granularity.value,
            "sensitivity_items": self.sensitivity_items,
            "seconds": round(self.seconds, 2),
            "excluded": [c.to_dict() for c in self.excluded],
            "candidates": [c.to_dict() for c in self.candidates],
            "attempts": [a.to_dict() for a in self.attempts],
        }


def subset(eval_set: EvalSet, items: int | None) -> EvalSet:
    """Return the first whole batches of `eval_set` holding at least `items` items (all of it for None)."""
    if items is None or items >= eval_set.num_items:
        return eval_set
    if items < 1:
        raise ConfigError(f"sensitivity_items {items} must be >= 1")
    batches, count = [], 0
    for batch in eval_set.batches:
        batches.append(batch)
        count += len(next(iter(batch.values())))
        if count >= items:
            break
    labels = None if eval_set.labels is None else eval_set.labels[:count]
    return EvalSet(batches=tuple(batches), labels=labels)


class _Maker:
    """Makes and gates variants of one pre-processed model; counts files so each try has its own."""

    def __init__(
        self,
        *,
        model: Path,
        settings: QuantSettings,
        calibration: EvalSet | None,
        spec: GateSpec,
        workdir: Path,
    ) -> None:
        self.model = model
        self.settings = settings
        self.calibration = calibration
        self.spec = spec
        self.workdir = workdir
        self.count = 0
        self.nodes: list[str] = []  # every node the method quantizes, set once the full variant is made
        self.cache = workdir / "calibration-ranges.json" if settings.method is QuantMethod.INT8_STATIC else None

    def make(self, settings: QuantSettings, *, only: Sequence[str] | None = None) -> Path:
        self.count += 1
        output = self.workdir / f"try-{self.count}.onnx"
        if only is not None and not settings.is_int8:
            # FP16 has no "convert only these": block every other candidate instead.
            others = [n for n in self.nodes if n not in set(only)]
            return quantize_model(self.model, output, settings.with_exclusions(others), self.calibration)
        return quantize_model(
            self.model,
            output,
            settings,
            self.calibration,
            preprocessed=settings.is_int8,
            nodes_to_quantize=only,
            calibration_cache=self.cache,
        )

    def gate(self, path: Path, eval_set: EvalSet, reference: npt.NDArray[Any]) -> GateResult:
        candidate = run_model(path, eval_set, self.spec.output)
        return evaluate_gate(reference, candidate, self.spec, eval_set.labels)


def _group(nodes: Sequence[str], granularity: Granularity) -> list[tuple[str, tuple[str, ...]]]:
    if granularity is Granularity.NODE:
        return [(n, (n,)) for n in nodes]
    layers: dict[str, list[str]] = {}
    for node in nodes:
        layers.setdefault(layer_of(node), []).append(node)
    return [(name, tuple(members)) for name, members in layers.items()]


def measure_costs(
    maker: _Maker,
    groups: Sequence[tuple[str, tuple[str, ...]]],
    eval_set: EvalSet,
    reference: npt.NDArray[Any],
) -> list[Candidate]:
    """Quantize each group alone, gate it on `eval_set`, and return the candidates, most costly first."""
    measured = []
    for index, (name, nodes) in enumerate(groups, start=1):
        path = maker.make(maker.settings, only=nodes)
        gate = maker.gate(path, eval_set, reference)
        path.unlink(missing_ok=True)
        measured.append(Candidate(name=name, nodes=nodes, tolerance_used=gate.tolerance_used, gate=gate))
        _LOGGER.info("sensitivity %d/%d: %s alone uses %.3g of the tolerance (%s)", index, len(groups), name,
                     gate.tolerance_used, gate.summary())  # fmt: skip
    return sorted(measured, key=lambda c: (-c.tolerance_used, c.gate.cosine_mean, -c.gate.max_abs_error))


def search_exclusions(
    *,
    model: Path,
    settings: QuantSettings,
    eval_set: EvalSet,
    reference: npt.NDArray[Any],
    spec: GateSpec,
    workdir: Path,
    calibration: EvalSet | None = None,
    granularity: Granularity = Granularity.NODE,
    sensitivity_items: int | None = None,
    max_tries: int = DEFAULT_MAX_TRIES,
    quantized: Path | None = None,
) -> SearchResult:
    """Find the fewest nodes to leave in float so that the variant passes the gate.

    Args:
        model: the model to quantize: pre-processed (`preprocess_model`) for INT8, the FP32 file for FP16.
        settings: the failing settings; their own exclusions are kept.
        eval_set: the gate's evaluation set.
        reference: the FP32 model's output on `eval_set` (the gate's reference).
        spec: the gate.
        workdir: an existing folder for the tries (the passing variant stays there).
        calibration: static INT8's calibration set (FP16: inputs for its NaN/Inf check).
        granularity: candidates are single nodes or whole layers.
        sensitivity_items: measure costs on the first batches holding this many items (None: all); the tries are
            always gated on the whole set.
        max_tries: the most exclusion tries (each quantizes and gates once); at least 1.
        quantized: the fully quantized variant, when the caller has it (saves one quantization).

    Returns:
        The search's result; `passed` is False when no try within `max_tries` passed.

    Raises:
        ConfigError: max_tries < 1, or the method quantized no node at all.
        ConversionError: quantizing failed.
    """
    if max_tries < 1:
        raise ConfigError(f"max_tries {max_tries} must be >= 1")
    started = time.perf_counter()
    maker = _Maker(model=model, settings=settings, calibration=calibration, spec=spec, workdir=workdir)
    full = quantized if quantized is not None else maker.make(settings)
    nodes = quantized_nodes(model, full)
    if not nodes:
        raise ConfigError(f"{settings.label} quantized no node of {model.name}; there is nothing to exclude")
    maker.nodes = nodes
    measure_set = subset(eval_set, sensitivity_items)
    groups = _group(nodes, granularity)
    _LOGGER.info("measuring the sensitivity of %d %ss of %s on %d items", len(groups), granularity.value,
                 settings.label, measure_set.num_items)  # fmt: skip
    ranked = measure_costs(maker, groups, measure_set, reference[: measure_set.num_items])
    attempts: list[Attempt] = []
    results: dict[int, tuple[QuantSettings, GateResult, Path]] = {}

    def attempt(k: int) -> bool:
        excluded = [n for c in ranked[:k] for n in c.nodes]
        trial = settings.with_exclusions(excluded)
        path = maker.make(trial)
        gate = maker.gate(path, eval_set, reference)
        results[k] = (trial, gate, path)
        attempts.append(Attempt(excluded_candidates=k, excluded_nodes=len(excluded), gate=gate))
        _LOGGER.info("excluding the %d most costly %s(s) (%d nodes): %s -> %s", k, granularity.value,
                     len(excluded), gate.summary(), "pass" if gate.passed else "fail")  # fmt: skip
        return gate.passed

    low, high = 0, None  # the largest k known to fail, the smallest known to pass
    k = 1
    while len(attempts) < max_tries and k <= len(ranked):
        if attempt(k):
            high = k
            break
        low = k
        k = len(ranked) if k * 2 > len(ranked) and k < len(ranked) else k * 2
    while high is not None and high - low > 1 and len(attempts) < max_tries:
        middle = (low + high) // 2
        if attempt(middle):
            high = middle
        else:
            low = middle
    chosen = high if high is not None else max(results)
    trial, gate, path = results[chosen]
    for k_tried, (_, _, other) in results.items():
        if k_tried != chosen:
            other.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    _LOGGER.info("accuracy-aware search for %s: %s after %d tries in %.1fs", settings.label,
                 f"passes with {chosen} excluded" if high is not None else "no passing variant", len(attempts),
                 seconds)  # fmt: skip
    return SearchResult(
        passed=high is not None,
        settings=trial,
        gate=gate,
        model_path=path,
        excluded=tuple(ranked[:chosen]),
        candidates=tuple(ranked),
        attempts=tuple(attempts),
        granularity=granularity,
        sensitivity_items=measure_set.num_items,
        seconds=seconds,
    )
