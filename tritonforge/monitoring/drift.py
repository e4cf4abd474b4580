"""Has a window of traffic drifted from a model version's reference? Per feature, in the predictions, and jointly.

    report = detect_drift(reference.data, window, holdout=reference.holdout, kinds=reference.kinds,
                          settings=DriftSettings(alpha=0.05, min_effect_size=0.1))
    report.drifted                       # the verdict for the window
    [t.name for t in report.drifted_tests]  # e.g. ["image[3,4]", "logits:class_mix", "image:mmd"]

How each tensor is tested (its kind comes from the reference profile):

    input, per element     continuous: Kolmogorov-Smirnov two-sample (scipy.stats.ks_2samp, exact for small samples,
                           asymptotic for large), effect = Wasserstein distance / the reference's sd;
                           integer, bool or string with <= max_categories values in the reference: chi-square on the
                           reference-vs-window contingency table (scipy.stats.chi2_contingency; categories expected
                           fewer than 5 times are pooled), effect = Cramér's V of the two rows' shares at equal weight
                           (scipy.stats.contingency.association; independent of the window's size)
    scores (classifier)    class mix: chi-square on the predicted classes; confidence: KS on the top-class probability
    values (regression)    KS per element, as for inputs
    input or embedding     multivariate: MMD with an RBF kernel (median heuristic) on a PCA (scikit-learn) fitted on
    with >= 4 float values the reference's holdout, data disjoint from the reference; p-value from a permutation test
                           that permutes the pooled reference + window sample

The verdict: tests are grouped in families (data, prediction, multivariate); each family gets alpha / (number of
families) (Bonferroni), and within a family p-values are adjusted by Benjamini-Hochberg
(scipy.stats.false_discovery_control). Under no drift every null is true, so the chance that a window raises a false
alarm is at most alpha. A test is drifted when its adjusted p-value is below its family's alpha AND its effect size is
at least the minimum (min_effect_size; min_mmd2 for MMD): at a large window a p-value alone flags negligible shifts.
Windows above max_items are sampled uniformly; MMD uses at most mmd_max_items per side. Everything is deterministic
given the seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge.errors import ConfigError

Arrays = Mapping[str, npt.NDArray[Any]]


class TensorKind(str, Enum):
    """What a tensor of the reference holds, which decides how it is tested."""

    INPUT = "input"
    """A model input: per-element tests, and the multivariate test when it has several float values."""
    SCORES = "scores"
    """A classifier's class scores (logits or probabilities): class mix and confidence."""
    EMBEDDING = "embedding"
    """A vector output (an embedding): the multivariate test only."""
    VALUES = "values"
    """Any other output (regression values): per-element tests."""


class Family(str, Enum):
    """A group of tests that shares one share of alpha."""

    DATA = "data"
    PREDICTION = "prediction"
    MULTIVARIATE = "multivariate"


@dataclass(frozen=True, kw_only=True)
class DriftSettings:
    """Thresholds and bounds of a drift analysis (the model's monitoring.yaml `drift` section sets the first four).

    Attributes:
        alpha: the false-alarm rate allowed per window, over all tests.
        min_effect_size: the smallest Wasserstein/sd or Cramér's V that counts as drift.
        multivariate: run the MMD test.
        max_items: windows above this are sampled uniformly down to it.
        min_mmd2: the smallest MMD² (unbiased, RBF kernel) that counts as drift.
        max_categories: integer/string features with at most this many reference values are categorical.
        max_features_per_tensor: tensors with more elements get no per-element tests (multivariate only).
        mmd_max_items: MMD's sample size per side (its kernel matrix is quadratic in it).
        mmd_permutations: permutations of the pooled sample (the smallest p-value is 1 / (permutations + 1)).
        mmd_components: PCA components the MMD runs on.
        seed: seeds sampling and permutations.
    """

    alpha: float = 0.05
    min_effect_size: float = 0.1
    multivariate: bool = True
    max_items: int = 50_000
    min_mmd2: float = 0.002
    max_categories: int = 20
    max_features_per_tensor: int = 512
    mmd_max_items: int = 500
    mmd_permutations: int = 200
    mmd_components: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"drift alpha {self.alpha} must be between 0 and 1 (e.g. 0.05)")
        if self.min_effect_size < 0 or self.min_mmd2 < 0:
            raise ConfigError("drift minimum effect sizes must be >= 0")
        if self.max_items < 2 or self.mmd_max_items < 2 or self.mmd_permutations < 1 or self.mmd_components < 1:
            raise ConfigError("drift sample sizes, permutations and components must be positive (items >= 2)")


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """One test of the window against the reference.

    Attributes:
        family: data, prediction or multivariate.
        name: what was tested, e.g. "image[3,4]", "logits:class_mix", "logits:confidence", "image:mmd".
        tensor: the tensor it belongs to.
        test: "ks", "chi2" or "mmd".
        statistic: the test statistic.
        p_value: the raw p-value.
        p_adjusted: after Benjamini-Hochberg within the family.
        effect_name: "wasserstein/sd", "cramers_v" or "mmd2".
        effect_size: the effect size.
        min_effect: the effect size needed to call drift.
        drifted: p_adjusted < the family's alpha and effect_size >= min_effect.
        n_reference: reference items used.
        n_window: window items used.
    """

    family: str
    name: str
    tensor: str
    test: str
    statistic: float
    p_value: float
    p_adjusted: float
    effect_name: str
    effect_size: float
    min_effect: float
    drifted: bool
    n_reference: int
    n_window: int


@dataclass(frozen=True, kw_only=True)
class DriftReport:
    """A window's drift tests and verdict.

    Attributes:
        tests: every test, families in order, features in tensor order.
        drifted: whether any test is drifted.
        family_alpha: the alpha each family was judged at.
        n_reference: reference items.
        n_window: window items (after sampling).
        n_window_total: window items before sampling.
        skipped: tensors not tested, with why.
        settings: the settings used.
    """

    tests: tuple[TestResult, ...]
    drifted: bool
    family_alpha: float
    n_reference: int
    n_window: int
    n_window_total: int
    skipped: dict[str, str] = field(default_factory=dict)
    settings: DriftSettings = field(default_factory=DriftSettings)

    @property
    def drifted_tests(self) -> list[TestResult]:
        """The tests that found drift, largest effect first."""
        return sorted((t for t in self.tests if t.drifted), key=lambda t: -t.effect_size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (drift.json)."""
        return {
            "drifted": self.drifted,
            "family_alpha": self.family_alpha,
            "n_reference": self.n_reference,
            "n_window": self.n_window,
            "n_window_total": self.n_window_total,
            "drifted_tests": [t.name for t in self.drifted_tests],
            "skipped": dict(self.skipped),
            "settings": asdict(self.settings),
            "tests": [asdict(t) for t in self.tests],
        }


@dataclass(frozen=True)
class _Raw:
    family: Family
    name: str
    tensor: str
    test: str
    statistic: float
    p_value: float
    effect_name: str
    effect_size: float
    n_reference: int
    n_window: int


def continuous_test(reference: npt.NDArray[Any], window: npt.NDArray[Any]) -> tuple[float, float, float]:
    """KS two-sample test and the Wasserstein distance in reference sds: (statistic, p-value, effect).

    A constant reference feature has no sd; the pooled sample's sd scales it then (0 effect if both are constant).
    """
    from scipy import stats

    ref = np.asarray(reference, dtype=np.float64)
    win = np.asarray(window, dtype=np.float64)
    result = stats.ks_2samp(ref, win)
    scale = float(np.std(ref)) or float(np.std(np.concatenate([ref, win])))
    effect = float(stats.wasserstein_distance(ref, win)) / scale if scale > 0 else 0.0
    return float(result.statistic), float(result.pvalue), effect


_BALANCED_ROW_TOTAL = 100_000
"""Row total of the share table Cramér's V is computed on (large, so rounding the shares changes nothing)."""


def categorical_test(
    reference: npt.NDArray[Any], window: npt.NDArray[Any], categories: npt.NDArray[Any] | None = None
) -> tuple[float, float, float]:
    """Chi-square on the reference-vs-window counts per category, and Cramér's V: (statistic, p-value, effect).

    Categories are the reference's values (or `categories`); window values outside them count as one "other"
    category, and categories expected fewer than 5 times in either row are pooled into one, so the chi-square
    approximation holds.
    """
    from scipy.stats import chi2_contingency
    from scipy.stats.contingency import association

    cats = np.unique(reference) if categories is None else np.asarray(categories)
    ref_counts = np.array([np.sum(reference == c) for c in cats], dtype=np.float64)
    win_counts = np.array([np.sum(window == c) for c in cats], dtype=np.float64)
    ref_counts = np.append(ref_counts, len(reference) - ref_counts.sum())
    win_counts = np.append(win_counts, len(window) - win_counts.sum())
    table = np.vstack([ref_counts, win_counts])
    table = table[:, table.sum(axis=0) > 0]
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    rare = (expected < 5).any(axis=0)
    if rare.any():
        table = np.column_stack([table[:, ~rare], table[:, rare].sum(axis=1)])
        table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    result = chi2_contingency(table, correction=False)
    # Cramér's V of the raw table shrinks as the window outgrows the reference (a 500-item reference against 20,000
    # items reads a real class-mix shift as ~0.09): the effect is V of the two rows' shares at equal weight, a
    # property of the two distributions alone.
    balanced = np.rint(table / table.sum(axis=1, keepdims=True) * _BALANCED_ROW_TOTAL).astype(np.int64)
    effect = float(association(balanced, method="cramer"))
    return float(result.statistic), float(result.pvalue), effect


def mmd_permutation_test(
    reference: npt.NDArray[Any], window: npt.NDArray[Any], *, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Unbiased MMD² with an RBF kernel (bandwidth: the median pairwise distance) and its permutation p-value.

    The null distribution comes from permuting the pooled sample between the two sides (not from resampling the
    reference alone, which understates the window's own noise). All permutations share one kernel matrix.
    """
    from scipy.spatial.distance import pdist, squareform

    pooled = np.vstack([reference, window]).astype(np.float64)
    n, total = len(reference), len(pooled)
    m = total - n
    squared = pdist(pooled, "sqeuclidean")
    median = float(np.median(squared)) or 1.0
    kernel = np.exp(-squareform(squared) / (2.0 * median))
    np.fill_diagonal(kernel, 0.0)
    members = np.zeros((total, permutations + 1))
    members[:n, 0] = 1.0
    for column in range(1, permutations + 1):
        members[rng.permutation(total)[:n], column] = 1.0
    weighted = kernel @ members
    within_x = np.einsum("ij,ij->j", members, weighted)
    across = np.einsum("ij,ij->j", 1.0 - members, weighted)
    within_y = kernel.sum() - within_x - 2.0 * across
    mmd2 = within_x / (n * (n - 1)) + within_y / (m * (m - 1)) - 2.0 * across / (n * m)
    p_value = (1.0 + float(np.sum(mmd2[1:] >= mmd2[0]))) / (permutations + 1.0)
    return float(mmd2[0]), p_value


def class_probabilities(scores: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Rows of class scores as probabilities: kept when they already are (in [0, 1], summing to 1), else softmax."""
    values = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    if values.size and values.min() >= 0 and values.max() <= 1 and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        return values
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    probabilities: npt.NDArray[np.float64] = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


def _flat(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.asarray(array).reshape(len(array), -1)


def _element_name(tensor: str, shape: tuple[int, ...], index: int) -> str:
    if len(shape) <= 1 and (not shape or shape[0] == 1):
        return tensor
    return f"{tensor}[{','.join(str(int(i)) for i in np.unravel_index(index, shape))}]"


def _is_categorical(column: npt.NDArray[Any], max_categories: int) -> bool:
    return column.dtype.kind in "biuUSO" and len(np.unique(column)) <= max_categories


def _element_tests(
    tensor: str, ref: npt.NDArray[Any], win: npt.NDArray[Any], family: Family, settings: DriftSettings
) -> list[_Raw]:
    shape = tuple(ref.shape[1:])
    flat_ref, flat_win = _flat(ref), _flat(win)
    tests = []
    for index in range(flat_ref.shape[1]):
        column_ref, column_win = flat_ref[:, index], flat_win[:, index]
        categorical = _is_categorical(column_ref, settings.max_categories)
        if categorical:
            statistic, p_value, effect = categorical_test(column_ref, column_win)
        else:
            statistic, p_value, effect = continuous_test(column_ref, column_win)
        tests.append(
            _Raw(family, _element_name(tensor, shape, index), tensor, "chi2" if categorical else "ks", statistic,
                 p_value, "cramers_v" if categorical else "wasserstein/sd", effect, len(ref), len(win))
        )  # fmt: skip
    return tests


def _prediction_tests(tensor: str, ref: npt.NDArray[Any], win: npt.NDArray[Any]) -> list[_Raw]:
    ref_p, win_p = class_probabilities(ref), class_probabilities(win)
    classes = np.arange(ref_p.shape[1])
    statistic, p_value, effect = categorical_test(ref_p.argmax(axis=1), win_p.argmax(axis=1), classes)
    mix = _Raw(Family.PREDICTION, f"{tensor}:class_mix", tensor, "chi2", statistic, p_value, "cramers_v", effect,
               len(ref), len(win))  # fmt: skip
    statistic, p_value, effect = continuous_test(ref_p.max(axis=1), win_p.max(axis=1))
    confidence = _Raw(Family.PREDICTION, f"{tensor}:confidence", tensor, "ks", statistic, p_value, "wasserstein/sd",
                      effect, len(ref), len(win))  # fmt: skip
    return [mix, confidence]


def _subsample(array: npt.NDArray[Any], size: int, rng: np.random.Generator) -> npt.NDArray[Any]:
    if len(array) <= size:
        return array
    return array[np.sort(rng.choice(len(array), size=size, replace=False))]


def _mmd_test(
    tensor: str,
    ref: npt.NDArray[Any],
    win: npt.NDArray[Any],
    holdout: npt.NDArray[Any],
    settings: DriftSettings,
    rng: np.random.Generator,
) -> _Raw:
    from sklearn.decomposition import PCA

    flat_holdout = _flat(holdout).astype(np.float64)
    components = min(settings.mmd_components, flat_holdout.shape[1], len(flat_holdout))
    pca = PCA(n_components=components, svd_solver="full", random_state=settings.seed).fit(flat_holdout)
    x = pca.transform(_subsample(_flat(ref), settings.mmd_max_items, rng).astype(np.float64))
    y = pca.transform(_subsample(_flat(win), settings.mmd_max_items, rng).astype(np.float64))
    mmd2, p_value = mmd_permutation_test(x, y, permutations=settings.mmd_permutations, rng=rng)
    return _Raw(Family.MULTIVARIATE, f"{tensor}:mmd", tensor, "mmd", mmd2, p_value, "mmd2", mmd2, len(x), len(y))


def _plan(
    reference: Arrays, window: Arrays, holdout: Arrays | None, kinds: Mapping[str, TensorKind], settings: DriftSettings
) -> tuple[list[tuple[str, Family | str]], dict[str, str]]:
    """Which tests run on which tensor; the rest are skipped, with why."""
    planned: list[tuple[str, Family | str]] = []
    skipped: dict[str, str] = {}
    for name, ref in reference.items():
        kind = TensorKind(kinds.get(name, TensorKind.INPUT))
        if name not in window:
            skipped[name] = "not in the window (not logged in full)"
            continue
        if tuple(window[name].shape[1:]) != tuple(ref.shape[1:]):
            skipped[name] = f"per-item shape {tuple(window[name].shape[1:])} differs from the reference's"
            continue
        width = int(np.prod(ref.shape[1:], dtype=np.int64))
        if kind is TensorKind.SCORES:
            planned.append((name, Family.PREDICTION))
        elif kind in (TensorKind.INPUT, TensorKind.VALUES) and width <= settings.max_features_per_tensor:
            planned.append((name, Family.DATA if kind is TensorKind.INPUT else "values"))
        multivariate = kind in (TensorKind.INPUT, TensorKind.EMBEDDING) and width >= 4 and ref.dtype.kind == "f"
        if multivariate and settings.multivariate:
            if holdout is None or name not in holdout or len(holdout[name]) < 2:
                skipped[f"{name}:mmd"] = "the reference has no holdout to fit the PCA on"
            else:
                planned.append((name, Family.MULTIVARIATE))
    return planned, skipped


def _judge(raw: list[_Raw], settings: DriftSettings) -> tuple[list[TestResult], float]:
    from scipy.stats import false_discovery_control

    families = [f for f in Family if any(r.family is f for r in raw)]
    family_alpha = settings.alpha / max(1, len(families))
    results = []
    for family in families:
        members = [r for r in raw if r.family is family]
        adjusted = false_discovery_control(np.array([r.p_value for r in members]), method="bh")
        for r, p_adjusted in zip(members, adjusted, strict=True):
            minimum = settings.min_mmd2 if r.test == "mmd" else settings.min_effect_size
            results.append(
                TestResult(
                    family=family.value, name=r.name, tensor=r.tensor, test=r.test, statistic=r.statistic,
                    p_value=r.p_value, p_adjusted=float(p_adjusted), effect_name=r.effect_name,
                    effect_size=r.effect_size, min_effect=minimum,
                    drifted=bool(p_adjusted < family_alpha and r.effect_size >= minimum),
                    n_reference=r.n_reference, n_window=r.n_window,
                )
            )  # fmt: skip
    return results, family_alpha


def detect_drift(
    reference: Arrays,
    window: Arrays,
    *,
    holdout: Arrays | None = None,
    kinds: Mapping[str, TensorKind | str] | None = None,
    settings: DriftSettings | None = None,
) -> DriftReport:
    """Test a window of inputs and outputs against the reference (see the module docstring for the tests).

    Args:
        reference: the reference's tensors by name, [items, ...] each (inputs and outputs together).
        window: the window's tensors by the same names; those missing are skipped and said so.
        holdout: reference-time data disjoint from `reference`, for fitting the multivariate test's PCA.
        kinds: each tensor's kind (default: input).
        settings: thresholds and bounds.

    Returns:
        Every test, with p-values, effect sizes and the window's verdict.

    Raises:
        ConfigError: an empty reference or window, or nothing that both hold to test.
    """
    settings = settings or DriftSettings()
    resolved = {name: TensorKind(kind) for name, kind in (kinds or {}).items()}
    n_reference = _items(reference, "reference")
    n_total = _items(window, "window")
    rng = np.random.default_rng(settings.seed)
    keep = None if n_total <= settings.max_items else np.sort(rng.choice(n_total, settings.max_items, replace=False))
    sampled = {name: (array if keep is None else np.asarray(array)[keep]) for name, array in window.items()}
    planned, skipped = _plan(reference, sampled, holdout, resolved, settings)
    if not planned:
        raise ConfigError(
            f"nothing to test: the window holds none of the reference's tensors in full ({', '.join(reference)}); "
            "log the inputs in full (raise the logger's size cap) or build the reference from what is logged"
        )
    raw: list[_Raw] = []
    for name, what in planned:
        ref, win = np.asarray(reference[name]), np.asarray(sampled[name])
        if what is Family.PREDICTION:
            raw.extend(_prediction_tests(name, ref, win))
        elif what is Family.MULTIVARIATE:
            assert holdout is not None
            raw.append(_mmd_test(name, ref, win, np.asarray(holdout[name]), settings, rng))
        else:
            raw.extend(_element_tests(name, ref, win, Family.DATA if what is Family.DATA else Family.PREDICTION,
                                      settings))  # fmt: skip
    results, family_alpha = _judge(raw, settings)
    return DriftReport(
        tests=tuple(results), drifted=any(r.drifted for r in results), family_alpha=family_alpha,
        n_reference=n_reference, n_window=min(n_total, settings.max_items), n_window_total=n_total,
        skipped=skipped, settings=settings,
    )  # fmt: skip


def _items(arrays: Arrays, what: str) -> int:
    if not arrays:
        raise ConfigError(f"the {what} holds no tensors; nothing to compare")
    sizes = {name: len(array) for name, array in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ConfigError(f"the {what}'s tensors have different item counts {sizes}; give one row per item in each")
    count = next(iter(sizes.values()))
    if count < 2:
        raise ConfigError(f"the {what} has {count} item(s); drift needs at least 2 (widen the window)")
    return count
