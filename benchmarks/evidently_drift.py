"""Evidently's default DataDriftPreset over windows saved by benchmarks/monitor_drift.py (runs in Evidently's own venv).

    runs/venv-evidently/bin/python benchmarks/evidently_drift.py FOLDER    # one JSON line per window on stdout

FOLDER holds one sub-folder per data set with `reference.npy`, `columns.json` (names; the ones listed under
"categorical" are typed as such) and `<condition>__<size>__<k>.npy` windows. The verdict is the preset's dataset drift
(share of drifted columns >= 0.5), with its default tests per column (chosen by Evidently by type and size). This
file imports only numpy, pandas and evidently: Evidently is never a dependency of tritonforge.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from evidently.legacy.metric_preset import DataDriftPreset
from evidently.legacy.pipeline.column_mapping import ColumnMapping
from evidently.legacy.report import Report


def main(folder: Path) -> int:
    """Run the preset on every saved window and print its verdict and time."""
    for dataset in sorted(p for p in folder.iterdir() if p.is_dir()):
        meta = json.loads((dataset / "columns.json").read_text())
        columns, categorical = meta["columns"], meta.get("categorical", [])
        numerical = [c for c in columns if c not in categorical]
        mapping = ColumnMapping(numerical_features=numerical, categorical_features=categorical, target=None,
                                prediction=None)  # fmt: skip
        reference = pd.DataFrame(np.load(dataset / "reference.npy"), columns=columns)
        for path in sorted(dataset.glob("*__*__*.npy")):
            condition, size, index = path.stem.split("__")
            window = pd.DataFrame(np.load(path), columns=columns)
            started = time.perf_counter()
            report = Report(metrics=[DataDriftPreset()])
            report.run(reference_data=reference, current_data=window, column_mapping=mapping)
            result = report.as_dict()["metrics"][0]["result"]
            print(json.dumps({
                "dataset": dataset.name, "condition": condition, "size": int(size), "index": int(index),
                "drifted": bool(result["dataset_drift"]), "share": float(result["share_of_drifted_columns"]),
                "seconds": time.perf_counter() - started,
            }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
