"""The demo's monitoring step against the embedded Triton: real logged traffic, drift found in the noisy window only,
quality from every label given back, and the reference written beside the served version when it has none."""

from __future__ import annotations

import shutil
from pathlib import Path

from tritonforge.demo_monitoring import monitor_demo_traffic, monitoring_checks, quality_table
from tritonforge.examples.digits import DigitsBuild, load_split
from tritonforge.serving.launcher import EmbeddedTriton


def test_demo_traffic_drifts_only_in_the_noisy_window_and_every_item_is_labelled(
    triton_server: EmbeddedTriton, digits_build: DigitsBuild, digits_repository: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "repo"  # the reference is written into a copy: the session's repository stays as built
    shutil.copytree(digits_repository, repository)
    split = load_split()
    outcome = monitor_demo_traffic(
        triton_server.grpc_url,
        repository,
        split=split,
        reference_logits=digits_build.torch_test_logits,
        log_dir=tmp_path / "predictions",
    )
    half = len(split.x_test) - len(split.x_test) // 2
    assert outcome.clean.figures.window_items == outcome.shifted.figures.window_items == half
    assert not outcome.clean.drifted, outcome.clean.figures.drift
    assert "image" in outcome.shifted.drifted_groups
    assert all(monitoring_checks(outcome).values()), monitoring_checks(outcome)
    clean, shifted = outcome.clean.figures.quality, outcome.shifted.figures.quality
    assert clean is not None and shifted is not None
    assert clean.metrics["accuracy"] >= 0.9 and shifted.metrics["accuracy"] < clean.metrics["accuracy"]
    table = quality_table(outcome)
    assert table.splitlines()[1].split()[:3] == ["clean", str(half), str(half)]
    assert outcome.reference_written and (repository / "digits" / "1" / "reference" / "profile.json").is_file()
    again = monitor_demo_traffic(
        triton_server.grpc_url,
        repository,
        split=split,
        reference_logits=digits_build.torch_test_logits,
        log_dir=tmp_path / "again",
    )
    assert not again.reference_written  # the version's reference is used, not rewritten
