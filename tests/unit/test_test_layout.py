"""The test suite's layout: unique module names, and markers that split it into unit, integration and gpu tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

# A plugin that records, after every conftest hook ran, which markers each collected test carries.
_MARKS_PLUGIN = textwrap.dedent(
    """
    import json, os

    def pytest_collection_finish(session):
        marks = {item.nodeid: sorted(m.name for m in item.iter_markers() if m.name in ("integration", "gpu"))
                 for item in session.items}
        with open(os.environ["MARKS_OUT"], "w") as handle:
            json.dump(marks, handle)
    """
)


def test_every_test_module_has_a_unique_basename() -> None:
    # pytest imports test modules by basename (rootdir-relative, no packages): two files with one name break it.
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


def test_only_tests_under_integration_are_marked_integration_and_gpu_tests_stay_gpu(tmp_path: Path) -> None:
    (tmp_path / "marks_plugin.py").write_text(_MARKS_PLUGIN, encoding="utf-8")
    out = tmp_path / "marks.json"
    paths = ["tests/unit/test_test_layout.py", "tests/integration/test_tune.py", "tests/gpu/test_tensorrt_gpu.py"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MARKS_OUT": str(out)}

    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "marks_plugin", "-p", "no:cacheprovider"]

    done = subprocess.run(
        [*command, *paths],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    marks = json.loads(out.read_text(encoding="utf-8"))
    by_folder: dict[str, set[tuple[str, ...]]] = {}
    for nodeid, names in marks.items():
        by_folder.setdefault(nodeid.split("/")[1], set()).add(tuple(names))
    assert by_folder == {"unit": {()}, "integration": {("integration",)}, "gpu": {("gpu",)}}
