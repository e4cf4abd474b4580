"""Run folders: each run of a command gets a folder of its own, so a rerun never replaces an earlier run's results.

folder = new_run_dir(Path("runs") / "demo")     # runs/demo/20261201T224500Z (or ...Z-1 in the same second)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

__all__ = ["new_run_dir"]


def new_run_dir(base: Path) -> Path:
    """Create and return a new `<base>/<UTC time>[-n]` folder (created exclusively, so two runs never share one)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        folder = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(base / stamp)  # pragma: no cover - a thousand runs in one second
