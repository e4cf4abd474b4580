from __future__ import annotations

from pathlib import Path

from tritonforge._runs import new_run_dir


def test_new_run_dir_gives_each_run_its_own_folder_even_within_one_second(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path / "runs" / "demo")
    (first / "summary.json").write_text("{}")
    second = new_run_dir(tmp_path / "runs" / "demo")

    assert first != second and first.parent == second.parent == tmp_path / "runs" / "demo"
    assert (first / "summary.json").read_text() == "{}"
    assert list(second.iterdir()) == []
