"""Reference profiles: what a model version's inputs and outputs looked like on its evaluation data.

    staged = stage_reference(Path(tmp), inputs={"image": x}, outputs={"logits": logits}, labels=y)
    publish_reference(staged, version_dir)          # <repository>/digits/3/reference/, in one rename
    reference = load_reference(Path("model_repository"), "digits")     # the highest version that has one
    reference.data["image"], reference.holdout["image"], reference.profile["metrics"]["accuracy"]

Layout of `<repository>/<model>/<version>/reference/` (Triton loads only the model file from a version folder, and
`repo check` and the server's integrity check look only at the files the manifest names, so the folder is inert):

    reference.npz   input.<name>, output.<name>, labels: a seeded sample of at most `max_items` items
    holdout.npz     the same keys, items disjoint from reference.npz: drift fits its PCA here, never on the reference
    profile.json    item counts, each tensor's dtype, per-item shape and kind (input, scores, embedding, values),
                    per-feature summaries (mean, sd, quantiles; value counts for categorical ones), the reference
                    quality metrics (accuracy, macro F1, mean confidence when labels are known), seed and source

Export and quantize write one from their evaluation data; `tritonforge monitor reference` builds one for a model
exported elsewhere, running the model through ONNX Runtime.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge._atomic import atomic_write_text, published_dir, staging_dir
from tritonforge.errors import ConfigError
from tritonforge.monitoring.drift import TensorKind, class_probabilities

REFERENCE_DIR = "reference"
PROFILE_FILE = "profile.json"
DATA_FILE = "reference.npz"
HOLDOUT_FILE = "holdout.npz"
FORMAT_VERSION = 1
DEFAULT_MAX_ITEMS = 5_000
DEFAULT_HOLDOUT_FRACTION = 0.3
_SUMMARY_FEATURES = 512
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_EMBEDDING_MIN_WIDTH = 32


@dataclass(frozen=True, kw_only=True)
class Reference:
    """A loaded reference profile.

    Attributes:
        path: the reference folder.
        version: the model version it belongs to.
        data: reference tensors by name (inputs and outputs), [items, ...].
        holdout: tensors of the disjoint holdout, same names.
        labels: reference labels, or None.
        kinds: each tensor's kind.
        profile: profile.json's content.
    """

    path: Path
    version: int
    data: dict[str, npt.NDArray[Any]]
    holdout: dict[str, npt.NDArray[Any]]
    labels: npt.NDArray[Any] | None
    kinds: dict[str, TensorKind]
    profile: dict[str, Any]


def output_kind(array: npt.NDArray[Any], *, labelled: bool) -> TensorKind:
    """Guess an output's kind: class scores when labels are known, an embedding when wide, else values."""
    width = int(np.prod(array.shape[1:], dtype=np.int64))
    if array.dtype.kind != "f":
        return TensorKind.VALUES
    if labelled and array.ndim == 2 and width >= 2:
        return TensorKind.SCORES
    if width >= _EMBEDDING_MIN_WIDTH:
        return TensorKind.EMBEDDING
    return TensorKind.VALUES


def feature_summaries(array: npt.NDArray[Any], *, max_features: int = _SUMMARY_FEATURES) -> dict[str, Any]:
    """Per-element summaries of one tensor (the first `max_features` elements): the profile's human-readable part."""
    flat = np.asarray(array).reshape(len(array), -1)
    if flat.dtype.kind not in "biuf":
        values, counts = np.unique(flat[:, 0].astype(str), return_counts=True)
        top = np.argsort(-counts)[:20]
        return {"type": "categorical", "counts": {str(values[i]): int(counts[i]) for i in top}}
    numeric = flat[:, :max_features].astype(np.float64)
    quantiles = np.quantile(numeric, _QUANTILES, axis=0)
    return {
        "type": "numeric",
        "features": int(flat.shape[1]),
        "summarised": int(numeric.shape[1]),
        "mean": _rounded(numeric.mean(axis=0)),
        "sd": _rounded(numeric.std(axis=0)),
        "min": _rounded(numeric.min(axis=0)),
        "max": _rounded(numeric.max(axis=0)),
        "quantiles": {f"p{int(q * 100)}": _rounded(row) for q, row in zip(_QUANTILES, quantiles, strict=True)},
    }


def _rounded(values: npt.NDArray[Any]) -> list[float]:
    return [round(float(v), 6) for v in values]


def reference_metrics(scores: npt.NDArray[Any], labels: npt.NDArray[Any] | None) -> dict[str, float]:
    """Accuracy, macro F1 (scikit-learn) and mean top-class confidence of class scores; without labels, confidence."""
    probabilities = class_probabilities(scores)
    metrics = {"mean_confidence": float(probabilities.max(axis=1).mean())}
    if labels is not None:
        from sklearn.metrics import accuracy_score, f1_score

        predicted = probabilities.argmax(axis=1)
        truth = np.asarray(labels).astype(np.int64)
        metrics["accuracy"] = float(accuracy_score(truth, predicted))
        metrics["f1_macro"] = float(f1_score(truth, predicted, average="macro"))
    return metrics


def _check_arrays(inputs: Mapping[str, npt.NDArray[Any]], outputs: Mapping[str, npt.NDArray[Any]]) -> int:
    if not inputs and not outputs:
        raise ConfigError("a reference needs inputs or outputs; give the evaluation data and the model's outputs")
    clash = sorted(set(inputs) & set(outputs))
    if clash:
        raise ConfigError(f"tensor name(s) {clash} are both an input and an output; a reference keys them by name")
    sizes = {name: len(a) for name, a in {**inputs, **outputs}.items()}
    if len(set(sizes.values())) != 1:
        raise ConfigError(f"reference tensors have different item counts {sizes}; give one row per item in each")
    count = next(iter(sizes.values()))
    if count < 4:
        raise ConfigError(f"a reference needs at least 4 items (it splits off a holdout); got {count}")
    return count


def stage_reference(
    folder: Path,
    *,
    inputs: Mapping[str, npt.NDArray[Any]],
    outputs: Mapping[str, npt.NDArray[Any]],
    labels: npt.NDArray[Any] | None = None,
    kinds: Mapping[str, TensorKind] | None = None,
    max_items: int = DEFAULT_MAX_ITEMS,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int = 0,
    source: str = "",
) -> Path:
    """Write a reference folder (reference.npz, holdout.npz, profile.json) at `folder/reference`.

    Items are shuffled with `seed`; `holdout_fraction` of them (at most `max_items`) become the holdout, the rest (at
    most `max_items`) the reference.

    Args:
        folder: where to create the `reference` folder (e.g. a temporary folder, then `publish_reference`).
        inputs: evaluation inputs by input name, [items, ...].
        outputs: the model's outputs on them by output name.
        labels: one label per item, when known.
        kinds: tensor kinds; default: inputs are inputs, outputs guessed by `output_kind`.
        max_items: the most items kept on each side.
        holdout_fraction: the share of items held out for the PCA.
        seed: the shuffle's seed.
        source: what made it (recorded).

    Returns:
        The folder written.

    Raises:
        ConfigError: no tensors, tensors of different lengths, labels of the wrong length, fewer than 4 items.
    """
    count = _check_arrays(inputs, outputs)
    if labels is not None and len(labels) != count:
        raise ConfigError(f"{len(labels)} labels for {count} reference items; give one label per item")
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction {holdout_fraction} must be between 0 and 1 (e.g. 0.3)")
    order = np.random.default_rng(seed).permutation(count)
    cut = max(1, min(count - 2, round(count * holdout_fraction)))
    held, kept = order[:cut][:max_items], order[cut:][:max_items]
    resolved = dict.fromkeys(inputs, TensorKind.INPUT)
    resolved.update({name: output_kind(np.asarray(a), labelled=labels is not None) for name, a in outputs.items()})
    resolved.update(kinds or {})
    target = folder / REFERENCE_DIR
    target.mkdir(parents=True, exist_ok=False)
    for filename, rows in ((DATA_FILE, kept), (HOLDOUT_FILE, held)):
        arrays = {f"input.{n}": np.asarray(a)[rows] for n, a in inputs.items()}
        arrays.update({f"output.{n}": np.asarray(a)[rows] for n, a in outputs.items()})
        if labels is not None:
            arrays["labels"] = np.asarray(labels)[rows]
        np.savez_compressed(target / filename, **arrays)
    profile = _profile(inputs, outputs, labels, resolved, kept, held, seed=seed, source=source)
    atomic_write_text(target / PROFILE_FILE, json.dumps(profile, indent=1) + "\n")
    return target


def _profile(
    inputs: Mapping[str, npt.NDArray[Any]],
    outputs: Mapping[str, npt.NDArray[Any]],
    labels: npt.NDArray[Any] | None,
    kinds: Mapping[str, TensorKind],
    kept: npt.NDArray[np.int64],
    held: npt.NDArray[np.int64],
    *,
    seed: int,
    source: str,
) -> dict[str, Any]:
    tensors = {}
    metrics: dict[str, dict[str, float]] = {}
    for role, group in (("input", inputs), ("output", outputs)):
        for name, array in group.items():
            data = np.asarray(array)[kept]
            tensors[name] = {
                "role": role, "kind": kinds[name].value, "dtype": data.dtype.str, "shape": list(data.shape[1:]),
                "summary": feature_summaries(data),
            }  # fmt: skip
            if kinds[name] is TensorKind.SCORES:
                metrics[name] = reference_metrics(data, None if labels is None else np.asarray(labels)[kept])
    first = next(iter(metrics.values()), {})
    return {
        "format": FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "seed": seed,
        "items": len(kept),
        "holdout_items": len(held),
        "labelled": labels is not None,
        "tensors": tensors,
        "metrics": first,
        "metrics_per_output": metrics,
    }


def publish_reference(staged: Path, version_dir: Path, *, overwrite: bool = True) -> Path:
    """Move a staged reference folder into a version folder in one rename (replacing an older one if allowed).

    Raises:
        ConfigError: the version folder is missing, or a reference exists and overwrite is False.
    """
    if not version_dir.is_dir():
        raise ConfigError(f"version folder {version_dir} does not exist; export the model first")
    target = version_dir / REFERENCE_DIR
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists; pass --overwrite to replace it")
    stage = staging_dir(version_dir, ".reference-")
    try:
        shutil.copytree(staged, stage, dirs_exist_ok=True)
        with published_dir(stage, target, replace=overwrite):
            pass
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


def write_reference(version_dir: Path, *, overwrite: bool = True, **arrays: Any) -> Path:
    """Stage a reference (the keyword arguments of `stage_reference`) and publish it into `version_dir`."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tritonforge-reference-") as tmp:
        staged = stage_reference(Path(tmp), **arrays)
        return publish_reference(staged, version_dir, overwrite=overwrite)


def reference_version(model_dir: Path, version: int | None = None) -> int:
    """The version whose reference to use: `version`, or the highest version that has one.

    Raises:
        ConfigError: the model is missing, or the version (or every version) has no reference.
    """
    from tritonforge.converters.repository import version_numbers

    versions = version_numbers(model_dir)
    if not versions:
        raise ConfigError(f"no model at {model_dir} (no version folders); check --repository and the model name")
    with_reference = [v for v in versions if (model_dir / str(v) / REFERENCE_DIR / PROFILE_FILE).is_file()]
    if version is not None:
        if version not in with_reference:
            raise ConfigError(
                f"version {version} of '{model_dir.name}' has no reference; build one with "
                f"`tritonforge monitor reference {model_dir.name} --version {version} --data FILE.npz`"
            )
        return version
    if not with_reference:
        raise ConfigError(
            f"no version of '{model_dir.name}' has a reference; build one with "
            f"`tritonforge monitor reference {model_dir.name} --data FILE.npz`"
        )
    return with_reference[-1]


def _load_npz(path: Path) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[Any] | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}); build the reference again") from exc
    labels = arrays.pop("labels", None)
    return {key.split(".", 1)[1]: value for key, value in arrays.items()}, labels


def load_reference(repository: Path, model: str, version: int | None = None) -> Reference:
    """Load a version's reference (default: the highest version that has one).

    Raises:
        ConfigError: no reference, or its files are unreadable.
    """
    chosen = reference_version(repository / model, version)
    folder = repository / model / str(chosen) / REFERENCE_DIR
    try:
        profile = json.loads((folder / PROFILE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder / PROFILE_FILE} is unreadable ({exc}); build the reference again") from exc
    data, labels = _load_npz(folder / DATA_FILE)
    holdout, _ = _load_npz(folder / HOLDOUT_FILE)
    kinds = {name: TensorKind(info["kind"]) for name, info in profile.get("tensors", {}).items()}
    return Reference(
        path=folder, version=chosen, data=data, holdout=holdout, labels=labels, kinds=kinds, profile=profile
    )


def onnx_outputs(model_file: Path, inputs: Mapping[str, npt.NDArray[Any]], *, batch_size: int = 64) -> dict[str, Any]:
    """Run an ONNX model over inputs in batches (ONNX Runtime, CPU) and return every output, batches joined.

    Raises:
        ConfigError: the model cannot be loaded or rejects the inputs (names, dtypes, shapes).
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped errors
        raise ConfigError(f"cannot load {model_file} with ONNX Runtime: {' '.join(str(exc).split())[:200]}") from exc
    names = [o.name for o in session.get_outputs()]
    expected = {i.name for i in session.get_inputs()}
    if set(inputs) != expected:
        raise ConfigError(f"the data holds inputs {sorted(inputs)}, the model takes {sorted(expected)}; rename them")
    count = len(next(iter(inputs.values())))
    parts: dict[str, list[npt.NDArray[Any]]] = {name: [] for name in names}
    for start in range(0, count, batch_size):
        feed = {name: np.asarray(array[start : start + batch_size]) for name, array in inputs.items()}
        try:
            values = session.run(names, feed)
        except Exception as exc:  # ORT raises InvalidArgument, Fail... with no common base
            raise ConfigError(
                f"{model_file.name} rejected the reference data: {' '.join(str(exc).split())[:200]}; "
                "check the input names, dtypes and shapes"
            ) from exc
        for name, value in zip(names, values, strict=True):
            parts[name].append(np.asarray(value))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def build_reference(
    *,
    repository: Path,
    model: str,
    data: Path,
    version: int | None = None,
    labels: Path | None = None,
    labels_key: str = "labels",
    max_items: int = DEFAULT_MAX_ITEMS,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Build a reference for a model exported elsewhere: its ONNX model run over the data in an .npz.

    Args:
        repository: the model repository.
        model: the model's name.
        data: an .npz of input arrays keyed by input name (and optionally labels under `labels_key`).
        version: the version (default: the highest).
        labels: a separate .npy/.npz/.csv of labels (one per item).
        labels_key: the key of the labels inside the .npz files.
        max_items: the most items kept per side.
        seed: the sampling seed.
        overwrite: replace an existing reference.

    Returns:
        The reference folder written.

    Raises:
        ConfigError: no such model or version, no ONNX model file, unreadable data, or data the model rejects.
    """
    from tritonforge.converters.repository import version_numbers

    model_dir = repository / model
    versions = version_numbers(model_dir)
    if not versions:
        raise ConfigError(f"no model '{model}' in {repository}; check --repository and the model name")
    chosen = versions[-1] if version is None else version
    version_dir = model_dir / str(chosen)
    if chosen not in versions:
        raise ConfigError(f"model '{model}' has no version {chosen} (versions: {versions})")
    model_file = version_dir / "model.onnx"
    if not model_file.is_file():
        raise ConfigError(f"{model_file} is missing; `monitor reference` runs ONNX models (export it with tritonforge)")
    if (version_dir / REFERENCE_DIR).exists() and not overwrite:
        raise ConfigError(f"{version_dir / REFERENCE_DIR} exists; pass --overwrite to replace it")
    inputs, found_labels = _read_data(data, labels_key)
    if labels is not None:
        found_labels = _read_labels(labels, labels_key)
    outputs = onnx_outputs(model_file, inputs)
    return write_reference(
        version_dir, overwrite=overwrite, inputs=inputs, outputs=outputs, labels=found_labels, max_items=max_items,
        seed=seed, source=f"tritonforge monitor reference --data {data.name}",
    )  # fmt: skip


def _read_data(path: Path, labels_key: str) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[Any] | None]:
    if not path.is_file():
        raise ConfigError(f"data file {path} does not exist; save inputs with numpy.savez(path, <input>=array, ...)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable .npz ({exc}); save it with numpy.savez") from exc
    labels = arrays.pop(labels_key, None)
    if not arrays:
        raise ConfigError(f"{path} holds no input arrays (only {labels_key!r})")
    return arrays, labels


def _read_labels(path: Path, key: str) -> npt.NDArray[Any]:
    if not path.is_file():
        raise ConfigError(f"labels file {path} does not exist")
    if path.suffix == ".csv":
        import pandas as pd

        frame = pd.read_csv(path)
        column = key if key in frame.columns else frame.columns[-1]
        values: npt.NDArray[Any] = frame[column].to_numpy()
        return values
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable .npy/.npz ({exc})") from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        if key not in loaded.files:
            raise ConfigError(f"{path} has no {key!r} array (it has {loaded.files}); pass --labels-key")
        return np.asarray(loaded[key])
