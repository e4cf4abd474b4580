"""Drift detection on real shifts: power per shift and false-alarm rate per window size, ours against Evidently's.

    .venv/bin/python benchmarks/monitor_drift.py                  # results in runs/monitor-drift/<UTC time>/
    .venv/bin/python benchmarks/monitor_drift.py --windows 100 --large-windows 50 --evidently-windows 10

Data (nothing downloaded):
- digits: scikit-learn's load_digits (the digits example's data), pixels / 16. The example's CNN is trained
  (examples.digits.train, seeded) on 600 images; of the other 1,197, 500 form the reference, 200 its holdout (the
  PCA of the MMD test is fitted there) and 497 the pool that windows are drawn from. Shifts: Gaussian pixel noise
  (sd 0.1, clipped to [0, 1]), rotation by 10 degrees (scipy.ndimage.rotate, bilinear), and a class-mix change
  (classes 0, 1 and 2 drawn three times as often: 30% -> 56% of the window). The model's logits on each window
  are computed, so class mix and confidence are tested as they would be in production.
- minilm: all-MiniLM-L6-v2 embeddings (the example's model, sentence-transformers on CPU) of first sentences of
  standard-library docstrings. Reference family: every module of text_corpus.STDLIB_MODULES except the network and
  mail ones; shifted family: those (http, urllib, email, smtplib, imaplib, ...). Shifts: windows from the other family
  only, and windows with 25% of them. Embeddings are cached in runs/monitor-drift-cache/ (the first run embeds every
  sentence once, about a minute on 2 cores).

Windows of 200, 2,000 and 20,000 items. A no-shift window draws from the held-out pool: without replacement while the
pool is large enough, else with replacement (resampling: at 2,000 and 20,000 the window repeats pool items, so its
empirical distribution is the pool's; the false-alarm rate there measures the effect-size gate against a fixed pool,
which is the harder case). Shifted windows are drawn the same way from the shifted data. Ours: tritonforge's
detect_drift with the default settings (alpha 0.05, minimum effect 0.1, MMD on). Evidently: its default
DataDriftPreset (legacy API of evidently 0.7; dataset drift when half the columns drift) in its own venv
(runs/venv-evidently, made on first use), on the same windows (pixels + predicted class; the 384 embedding
columns), over fewer windows because it is slower. Also: the time and peak memory of `drift_from_log` over a
1,000,000-item window read from a Parquet prediction log through DuckDB (sampled to max_items).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritonforge._runs import new_run_dir  # noqa: E402
from tritonforge.monitoring.drift import DriftSettings, TensorKind, detect_drift  # noqa: E402

_LOGGER = logging.getLogger("monitor_drift")
SIZES = (200, 2_000, 20_000)
NETWORK_MODULES = (
    "ftplib", "http", "imaplib", "mailbox", "netrc", "poplib", "smtplib", "socket", "socketserver", "ssl", "urllib",
    "email", "xmlrpc", "ipaddress", "selectors", "mimetypes", "quopri", "base64", "binascii",
)  # fmt: skip
CACHE = ROOT / "runs" / "monitor-drift-cache"
EVIDENTLY_VENV = ROOT / "runs" / "venv-evidently"

Window = dict[str, np.ndarray]
Draw = Callable[[int, np.random.Generator], Window]


def _draw(pool_size: int, size: int, rng: np.random.Generator, weights: np.ndarray | None = None) -> np.ndarray:
    """Indices of a window: without replacement while the pool allows it (and no weights), else with."""
    if weights is None and size <= pool_size:
        return rng.choice(pool_size, size=size, replace=False)
    return rng.choice(pool_size, size=size, replace=True, p=weights)


def digits_case(seed: int = 0) -> dict[str, Any]:
    """The digits reference, holdout and window makers per condition."""
    import torch
    from scipy.ndimage import rotate
    from sklearn.datasets import load_digits

    from tritonforge.examples.digits import DigitsSplit, predict_logits, train

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(images))
    train_idx, ref_idx, hold_idx, pool_idx = order[:600], order[600:1100], order[1100:1300], order[1300:]
    torch.set_num_threads(1)
    split = DigitsSplit(x_train=images[train_idx], y_train=labels[train_idx], x_test=images[ref_idx],
                        y_test=labels[ref_idx])  # fmt: skip
    model = train(split, epochs=30, seed=seed)

    def tensors(x: np.ndarray) -> Window:
        return {"image": x, "logits": predict_logits(model, np.ascontiguousarray(x, dtype=np.float32))}

    pool, pool_labels = images[pool_idx], labels[pool_idx]
    rotated = np.stack([rotate(img[0], 10.0, reshape=False, order=1, mode="constant") for img in pool])[:, None]
    rotated = np.clip(rotated, 0.0, 1.0).astype(np.float32)
    mix = np.where(pool_labels <= 2, 3.0, 1.0)
    mix /= mix.sum()

    def none(size: int, rng: np.random.Generator) -> Window:
        return tensors(pool[_draw(len(pool), size, rng)])

    def noise(size: int, rng: np.random.Generator) -> Window:
        x = pool[_draw(len(pool), size, rng)]
        return tensors(np.clip(x + rng.normal(0.0, 0.1, x.shape).astype(np.float32), 0.0, 1.0))

    def rotation(size: int, rng: np.random.Generator) -> Window:
        return tensors(rotated[_draw(len(pool), size, rng)])

    def class_mix(size: int, rng: np.random.Generator) -> Window:
        return tensors(pool[_draw(len(pool), size, rng, weights=mix)])

    logits = predict_logits(model, images[ref_idx])
    accuracy = float((logits.argmax(axis=1) == labels[ref_idx]).mean())
    return {
        "reference": tensors(images[ref_idx]), "holdout": tensors(images[hold_idx]),
        "kinds": {"image": TensorKind.INPUT, "logits": TensorKind.SCORES},
        "conditions": {"none": none, "noise_sd0.1": noise, "rotation_10deg": rotation, "class_mix_0-2x3": class_mix},
        "about": {"reference_items": len(ref_idx), "holdout_items": len(hold_idx), "pool_items": len(pool_idx),
                  "reference_accuracy": accuracy},
    }  # fmt: skip


def _sentences_by_family() -> tuple[list[str], list[str]]:
    import importlib
    import inspect
    import warnings

    from tritonforge.examples.text_corpus import STDLIB_MODULES, _public_objects, first_sentence, keep_sentence

    families: dict[bool, set[str]] = {False: set(), True: set()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in STDLIB_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            network = name.split(".")[0] in NETWORK_MODULES
            for obj in _public_objects(module):
                doc = inspect.getdoc(obj)
                sentence = first_sentence(doc) if doc else None
                if sentence is not None and keep_sentence(sentence):
                    families[network].add(sentence)
    network = sorted(families[True])
    return sorted(families[False] - families[True]), network


def _embeddings(sentences: list[str], name: str) -> np.ndarray:
    import hashlib

    digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tritonforge.examples.minilm import load_sentence_transformer, reference_embeddings

    started = time.perf_counter()
    vectors = reference_embeddings(sentences, load_sentence_transformer())
    _LOGGER.info("embedded %d sentences in %.0fs", len(sentences), time.perf_counter() - started)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def minilm_case(seed: int = 0) -> dict[str, Any]:
    """The MiniLM reference (one module family's sentences) and the windows from the other family."""
    base_sentences, network_sentences = _sentences_by_family()
    base = _embeddings(base_sentences, "base")
    network = _embeddings(network_sentences, "network")
    order = np.random.default_rng(seed).permutation(len(base))
    ref_idx, hold_idx, pool_idx = order[:900], order[900:1300], order[1300:]
    pool = base[pool_idx]

    def none(size: int, rng: np.random.Generator) -> Window:
        return {"embedding": pool[_draw(len(pool), size, rng)]}

    def other(size: int, rng: np.random.Generator) -> Window:
        return {"embedding": network[_draw(len(network), size, rng)]}

    def mixed(size: int, rng: np.random.Generator) -> Window:
        shifted = rng.random(size) < 0.25
        out = pool[_draw(len(pool), size, rng)]
        out[shifted] = network[_draw(len(network), int(shifted.sum()), rng)]
        return {"embedding": out}

    return {
        "reference": {"embedding": base[ref_idx]}, "holdout": {"embedding": base[hold_idx]},
        "kinds": {"embedding": TensorKind.EMBEDDING},
        "conditions": {"none": none, "network_family": other, "network_25pct": mixed},
        "about": {"reference_items": len(ref_idx), "holdout_items": len(hold_idx), "pool_items": len(pool_idx),
                  "shifted_items": len(network), "embedding_dim": int(base.shape[1])},
    }  # fmt: skip


def _evidently_columns(name: str, window: Window) -> tuple[np.ndarray, list[str], list[str]]:
    if name == "digits":
        pixels = window["image"].reshape(len(window["image"]), -1)
        predicted = window["logits"].argmax(axis=1)[:, None]
        columns = [f"px{i}" for i in range(pixels.shape[1])] + ["prediction"]
        return np.hstack([pixels, predicted]).astype(np.float32), columns, ["prediction"]
    values = window["embedding"]
    return values.astype(np.float32), [f"e{i}" for i in range(values.shape[1])], []


def run_ours(
    name: str, case: dict[str, Any], windows: dict[int, int], evidently_dir: Path | None, evidently_windows: int
) -> list[dict[str, Any]]:
    """Our verdicts per condition and size; saves the first `evidently_windows` windows for Evidently."""
    rows = []
    if evidently_dir is not None:
        folder = evidently_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        matrix, columns, categorical = _evidently_columns(name, case["reference"])
        np.save(folder / "reference.npy", matrix)
        (folder / "columns.json").write_text(json.dumps({"columns": columns, "categorical": categorical}))
    for condition, draw in case["conditions"].items():
        for size in SIZES:
            rng = np.random.default_rng(zlib.crc32(f"{name}/{condition}/{size}".encode()))
            found, seconds, reasons = 0, 0.0, {"data": 0, "prediction": 0, "multivariate": 0}
            for k in range(windows[size]):
                window = draw(size, rng)
                started = time.perf_counter()
                report = detect_drift(case["reference"], window, holdout=case["holdout"], kinds=case["kinds"],
                                      settings=DriftSettings(seed=k))  # fmt: skip
                seconds += time.perf_counter() - started
                found += report.drifted
                for family in {t.family for t in report.drifted_tests}:
                    reasons[family] += 1
                if evidently_dir is not None and k < evidently_windows:
                    matrix, _, _ = _evidently_columns(name, window)
                    np.save(evidently_dir / name / f"{condition}__{size}__{k}.npy", matrix)
            rows.append({"dataset": name, "condition": condition, "size": size, "windows": windows[size],
                         "rate": found / windows[size], "by_family": reasons,
                         "seconds_per_window": seconds / windows[size]})  # fmt: skip
            _LOGGER.info("%s %-16s %6d: %.2f over %d windows (%.2fs each)", name, condition, size,
                         found / windows[size], windows[size], seconds / windows[size])  # fmt: skip
    return rows


def _ensure_evidently() -> Path | None:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        _LOGGER.info("installing evidently into %s (its own venv, not a tritonforge dependency)", EVIDENTLY_VENV)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "evidently", "pandas<3"], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            _LOGGER.warning("evidently could not be installed (%s); its column stays empty", exc)
            return None
    return python


def run_evidently(folder: Path) -> list[dict[str, Any]]:
    """Evidently's verdicts on the saved windows, aggregated per data set, condition and size."""
    python = _ensure_evidently()
    if python is None:
        return []
    script = ROOT / "benchmarks" / "evidently_drift.py"
    done = subprocess.run([str(python), str(script), str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        _LOGGER.warning("evidently failed: %s", done.stderr.strip().splitlines()[-1:] or done.returncode)
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            cells.setdefault((row["dataset"], row["condition"], row["size"]), []).append(row)
    out = []
    for (d, c, s), rows in sorted(cells.items()):
        rate = float(np.mean([r["drifted"] for r in rows]))
        seconds = float(np.mean([r["seconds"] for r in rows]))
        out.append({"dataset": d, "condition": c, "size": s, "windows": len(rows), "rate": rate,
                    "seconds_per_window": seconds})  # fmt: skip
    return out


def million_item_window(case: dict[str, Any], items: int, work: Path) -> dict[str, Any]:
    """Write `items` digits items to a Parquet prediction log, then time drift_from_log over all of them."""
    from tritonforge.monitoring.parquet_sink import ParquetSink
    from tritonforge.monitoring.records import PredictionRecord
    from tritonforge.monitoring.reference import write_reference

    repository = work / "repo"
    (repository / "digits" / "1").mkdir(parents=True)
    write_reference(repository / "digits" / "1", inputs={"image": case["reference"]["image"]},
                    outputs={"logits": case["reference"]["logits"]}, kinds={"logits": TensorKind.SCORES})  # fmt: skip
    sink = ParquetSink(work / "log")
    draw = case["conditions"]["none"]
    rng = np.random.default_rng(0)
    per_record, chunk = 8, 2_000
    started = time.perf_counter()
    written = 0
    while written < items:
        window = draw(per_record * chunk, rng)
        records = [
            PredictionRecord.create(model="digits", items=per_record,
                                    inputs={"image": window["image"][i : i + per_record]},
                                    outputs={"logits": window["logits"][i : i + per_record]})
            for i in range(0, per_record * chunk, per_record)
        ]  # fmt: skip
        sink.write(records)
        written += per_record * chunk
    write_seconds = time.perf_counter() - started
    code = (
        "import json, re, time, sys\n"
        "from pathlib import Path\n"
        "from tritonforge.monitoring.drift_report import drift_from_log\n"
        # VmHWM (this process's own peak, reset by exec); ru_maxrss keeps the forking parent's peak across exec
        "def hwm(): return int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1))\n"
        "base = hwm()\n"
        "t = time.perf_counter()\n"
        f"r = drift_from_log(log={str(work / 'log')!r}, repository=Path({str(repository)!r}), model='digits')\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_rss_mib': hwm() / 1024,"
        " 'rss_after_imports_mib': base / 1024, 'drifted': r.report.drifted,"
        " 'n_window': r.report.n_window, 'n_window_total': r.report.n_window_total}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        return {"items": written, "error": done.stderr.strip().splitlines()[-1:]}
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    log_bytes = sum(p.stat().st_size for p in (work / "log").rglob("*.parquet"))
    return {"items": written, "items_per_record": per_record, "write_seconds": write_seconds,
            "log_mib": log_bytes / 2**20, **figures}  # fmt: skip


def _table(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> str:
    index = {(r["dataset"], r["condition"], r["size"]): r for r in theirs}
    lines = [f"{'data':7} {'condition':17} {'window':>7} | {'ours':>5} {'n':>4} {'s/win':>6} | {'evidently':>9} "
             f"{'n':>3} {'s/win':>6}", "-" * 78]  # fmt: skip
    for r in ours:
        e = index.get((r["dataset"], r["condition"], r["size"]))
        theirs_text = f"{e['rate']:9.2f} {e['windows']:3d} {e['seconds_per_window']:6.2f}" if e else f"{'-':>9}"
        what = "FA" if r["condition"] == "none" else "pow"
        lines.append(f"{r['dataset']:7} {r['condition']:17} {r['size']:7d} | {r['rate']:5.2f} {r['windows']:4d} "
                     f"{r['seconds_per_window']:6.2f} | {theirs_text}  ({what})")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=100, help="windows per cell at 200 and 2,000 items")
    parser.add_argument("--large-windows", type=int, default=100, help="windows per cell at 20,000 items")
    parser.add_argument("--evidently-windows", type=int, default=10, help="windows per cell for Evidently")
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--million", type=int, default=1_000_000, help="items of the DuckDB window (0: skip)")
    parser.add_argument("--datasets", default="digits,minilm")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "monitor-drift")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = new_run_dir(args.out)
    windows = {200: args.windows, 2_000: args.windows, 20_000: args.large_windows}
    started = time.perf_counter()
    ours: list[dict[str, Any]] = []
    about: dict[str, Any] = {}
    cases = {"digits": digits_case, "minilm": minilm_case}
    with tempfile.TemporaryDirectory(prefix="drift-bench-", dir=out) as tmp:
        evidently_dir = None if args.no_evidently else Path(tmp) / "evidently"
        digits = None
        for name in args.datasets.split(","):
            case = cases[name]()
            digits = case if name == "digits" else digits
            about[name] = case["about"]
            ours.extend(run_ours(name, case, windows, evidently_dir, args.evidently_windows))
        theirs = run_evidently(evidently_dir) if evidently_dir is not None else []
        million = million_item_window(digits, args.million, Path(tmp)) if digits is not None and args.million else {}
    table = _table(ours, theirs)
    result = {"ours": ours, "evidently": theirs, "million_item_window": million, "data": about,
              "settings": dataclasses.asdict(DriftSettings()), "seconds": time.perf_counter() - started}  # fmt: skip
    (out / "drift.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "table.txt").write_text(table + "\n")
    print(table)
    if million:
        print(f"1M-item window: {json.dumps(million)}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
