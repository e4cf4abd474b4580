"""A drift analysis from the prediction log to its outputs: a table, drift.json, and an HTML report with PNG plots.

    result = drift_from_log(log="logs/", repository=Path("model_repository"), model="digits", last=2000)
    print(render_table(result.report))
    write_drift_report(result, Path("runs/drift"))   # drift.json, report.html, plots/*.png of the drifted features

Thresholds come from the model's monitoring.yaml (`drift` section, defaults otherwise); the window is read through
DuckDB with the config's max_items as the sample bound, so a window of a million items costs the memory of max_items.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge._atomic import atomic_write_text
from tritonforge.errors import ConfigError
from tritonforge.monitoring.drift import DriftReport, DriftSettings, TestResult, class_probabilities, detect_drift
from tritonforge.monitoring.reference import Reference, load_reference

_LOGGER = logging.getLogger(__name__)

MAX_PLOTS = 12
_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Drift: {{ model }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}.drift{background:#fdd}</style>
</head><body>
<h1>Drift of {{ model }} (reference: version {{ version }})</h1>
<p><b>{{ "DRIFT" if report.drifted else "no drift" }}</b>: {{ report.n_window }} window items
{% if report.n_window_total > report.n_window %}(sampled from {{ report.n_window_total }}){% endif %}
against {{ report.n_reference }} reference items; each family judged at alpha {{ "%.4f"|format(report.family_alpha) }}
(Benjamini-Hochberg within it), and an effect at least the minimum.</p>
{% if report.skipped %}<p>Not tested: {% for k, v in report.skipped.items() %}{{ k }} ({{ v }}){% if not loop.last %},
{% endif %}{% endfor %}</p>{% endif %}
{% for plot in plots %}<img src="{{ plot }}" width="420">{% endfor %}
<table><tr><th>test</th><th>family</th><th>kind</th><th>p</th><th>p adjusted</th><th>effect</th><th>min</th>
<th>verdict</th></tr>
{% for t in tests %}<tr class="{{ 'drift' if t.drifted else '' }}"><td>{{ t.name }}</td><td>{{ t.family }}</td>
<td>{{ t.test }}</td><td>{{ "%.3g"|format(t.p_value) }}</td><td>{{ "%.3g"|format(t.p_adjusted) }}</td>
<td>{{ "%.3g"|format(t.effect_size) }} {{ t.effect_name }}</td><td>{{ t.min_effect }}</td>
<td>{{ "drift" if t.drifted else "ok" }}</td></tr>
{% endfor %}</table></body></html>
"""


@dataclass(frozen=True, kw_only=True)
class DriftResult:
    """A drift analysis with what it compared.

    Attributes:
        model: the model.
        reference: the reference used.
        window: the window's tensors (after sampling).
        report: the tests and verdict.
    """

    model: str
    reference: Reference
    window: dict[str, npt.NDArray[Any]]
    report: DriftReport


def drift_settings(repository: Path, model: str, *, seed: int = 0) -> DriftSettings:
    """The model's drift thresholds: its monitoring.yaml `drift` section, or the defaults."""
    from tritonforge.monitoring.config import load_monitoring_config

    section = load_monitoring_config(repository, model).drift
    return DriftSettings(
        alpha=section.alpha, min_effect_size=section.min_effect_size, multivariate=section.multivariate,
        max_items=section.max_items, seed=seed,
    )  # fmt: skip


def drift_from_log(
    *,
    log: str,
    repository: Path,
    model: str,
    version: int | None = None,
    start: Any = None,
    end: Any = None,
    last: int | None = None,
    seed: int = 0,
) -> DriftResult:
    """Read a window of the prediction log and test it against the version's reference.

    Args:
        log: the prediction log's root.
        repository: the model repository holding the reference.
        model: the model.
        version: the reference's version, and the only version read from the log; default: the highest version
            that has a reference, and every logged version.
        start: the window's start (see log_reader.parse_window).
        end: the window's end.
        last: only the latest N items.
        seed: the seed of sampling and permutations.

    Raises:
        ConfigError: no reference, an empty window, or nothing in common to test.
    """
    from tritonforge.monitoring.log_reader import read_predictions

    settings = drift_settings(repository, model, seed=seed)
    reference = load_reference(repository, model, version)
    window = read_predictions(
        log, model, start=start, end=end, last=last, version=None if version is None else str(version),
        max_items=settings.max_items, seed=seed,
    )  # fmt: skip
    if len(window.request_ids) == 0:
        raise ConfigError(
            f"the window holds no logged predictions of '{model}' in {log}; widen --window or check --log and the model"
        )
    tensors = {**window.inputs, **window.outputs}
    report = detect_drift(reference.data, tensors, holdout=reference.holdout, kinds=reference.kinds, settings=settings)
    report = _with_total(report, window.total_items)
    return DriftResult(model=model, reference=reference, window=tensors, report=report)


def _with_total(report: DriftReport, total: int) -> DriftReport:
    import dataclasses

    return dataclasses.replace(report, n_window_total=max(total, report.n_window_total))


def render_table(report: DriftReport, *, all_tests: bool = False, max_rows: int = 20) -> Any:
    """A rich table of the drifted tests (or every test), largest effect first, with a caption giving the verdict."""
    from rich.table import Table

    rows = sorted(report.tests, key=lambda t: (not t.drifted, -t.effect_size))
    shown = (
        rows
        if all_tests
        else [t for t in rows if t.drifted or t.family != "data"]
        + [t for t in rows if not t.drifted and t.family == "data"][:5]
    )
    verdict = "DRIFT" if report.drifted else "no drift"
    table = Table(title=f"{verdict}: {len(report.drifted_tests)} of {len(report.tests)} tests drifted "
                        f"({report.n_window} window items vs {report.n_reference} reference items)")  # fmt: skip
    for column in ("test", "family", "kind", "p adjusted", "effect", "min", "verdict"):
        table.add_column(column, justify="left" if column in ("test", "family", "kind") else "right")
    for t in shown[:max_rows]:
        table.add_row(t.name, t.family, t.test, f"{t.p_adjusted:.3g}", f"{t.effect_size:.3g} {t.effect_name}",
                      f"{t.min_effect:g}", "drift" if t.drifted else "ok")  # fmt: skip
    return table


def _column(values: npt.NDArray[Any], test: TestResult) -> npt.NDArray[Any] | None:
    """The 1-D sample a test ran on (feature, predicted class or confidence); None for the multivariate test."""
    if test.test == "mmd":
        return None
    if test.name.endswith(":class_mix"):
        classes: npt.NDArray[Any] = class_probabilities(values).argmax(axis=1)
        return classes
    if test.name.endswith(":confidence"):
        confidence: npt.NDArray[Any] = class_probabilities(values).max(axis=1)
        return confidence
    flat = np.asarray(values).reshape(len(values), -1)
    if "[" not in test.name:
        return flat[:, 0]
    index = tuple(int(i) for i in test.name[test.name.index("[") + 1 : -1].split(","))
    return flat[:, int(np.ravel_multi_index(index, np.asarray(values).shape[1:]))]


def _plot(test: TestResult, reference: npt.NDArray[Any], window: npt.NDArray[Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    if test.test == "chi2":
        cats = np.union1d(np.unique(reference), np.unique(window))
        width = 0.4
        positions = np.arange(len(cats))
        ax.bar(positions - width / 2, [np.mean(reference == c) for c in cats], width, label="reference")
        ax.bar(positions + width / 2, [np.mean(window == c) for c in cats], width, label="window")
        ax.set_xticks(positions, [str(c) for c in cats])
        ax.set_ylabel("share")
    else:
        bins = np.histogram_bin_edges(np.concatenate([reference, window]).astype(np.float64), bins=30).tolist()
        ax.hist(reference, bins=bins, density=True, alpha=0.5, label="reference")
        ax.hist(window, bins=bins, density=True, alpha=0.5, label="window")
        ax.set_ylabel("density")
    ax.set_title(f"{test.name}: effect {test.effect_size:.3g}, p {test.p_adjusted:.2g}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_drift_report(result: DriftResult, out_dir: Path, *, max_plots: int = MAX_PLOTS) -> Path:
    """Write drift.json, report.html and a PNG per drifted feature (the largest effects, at most `max_plots`).

    Returns:
        The HTML report's path.
    """
    import jinja2

    report = result.report
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    for test in report.drifted_tests:
        if len(plots) >= max_plots:
            break
        ref = _column(result.reference.data[test.tensor], test)
        win = _column(result.window[test.tensor], test)
        if ref is None or win is None:
            continue
        name = f"{len(plots):02d}_{''.join(c if c.isalnum() else '_' for c in test.name)}.png"
        _plot(test, ref, win, plots_dir / name)
        plots.append(f"plots/{name}")
    document = {"model": result.model, "reference_version": result.reference.version, **report.to_dict()}
    atomic_write_text(out_dir / "drift.json", json.dumps(document, indent=1) + "\n")
    html = jinja2.Environment(autoescape=True).from_string(_TEMPLATE).render(
        model=result.model, version=result.reference.version, report=report, plots=plots,
        tests=sorted(report.tests, key=lambda t: (not t.drifted, -t.effect_size)),
    )  # fmt: skip
    atomic_write_text(out_dir / "report.html", html)
    _LOGGER.info("wrote %s (%d plots)", out_dir / "report.html", len(plots))
    return out_dir / "report.html"
